package kinderr

import "fmt"

// New returns an error of kind kind caused by cause, whose message is kind's
// followed by format and args (which usually print the cause).
func New(kind, cause error, format string, args ...any) error {
	return &kindError{kind: kind, cause: cause, msg: kind.Error() + ": " + fmt.Sprintf(format, args...)}
}

type kindError struct {
	kind, cause error
	msg         string
}

func (e *kindError) Error() string { return e.msg }

// Is reports whether target is the error's kind.
func (e *kindError) Is(target error) bool { return target == e.kind }

// Unwrap returns the cause.
func (e *kindError) Unwrap() error { return e.cause }
