package resp

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/redcon"
)

// reader parses the commands of a connection. It reads what the connection
// has (one Read) and returns every complete command in it at once, the
// pipeline, whose arguments point into its buffer: they stay valid until
// the next call, and nothing is copied or allocated per command.
//
// It accepts and refuses exactly what redcon v1.6.4's reader does, with the
// same errors: the RESP multibulk form is parsed here, the inline (telnet)
// form by redcon.Parse, line by line. As with redcon, a protocol error
// anywhere in what was read refuses the commands read with it.
type reader struct {
	rd         io.Reader
	buf        []byte
	start, end int   // buf[start:end] is read and not yet parsed
	err        error // a Read's error, returned once its bytes are parsed
	// args holds every argument of the commands parsed, cmdEnd where each
	// command's arguments end in it, and cmds the commands handed out.
	args   [][]byte
	cmdEnd []int
	cmds   [][][]byte
}

// Buffer sizes: a reader starts with readBufSize, grows for a command that
// does not fit, and shrinks back once it is empty.
const (
	readBufSize    = 16 << 10
	maxIdleBufSize = 64 << 10
)

// protocolError is a malformed command: the connection is told "ERR " and
// the error, and closed.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "Protocol error: " + e.msg }

// redcon's protocol errors, word for word.
var (
	errInvalidBulkLength      = &protocolError{"invalid bulk length"}
	errInvalidMultiBulkLength = &protocolError{"invalid multibulk length"}
	errUnbalancedQuotes       = &protocolError{"unbalanced quotes in request"}
)

func newReader(rd io.Reader) *reader {
	return &reader{rd: rd, buf: make([]byte, readBufSize)}
}

// read returns the next pipeline: one or more commands, each a slice of its
// arguments (the first the command name).
func (r *reader) read() ([][][]byte, error) {
	for {
		cmds, err := r.parse()
		if err != nil || len(cmds) > 0 {
			return cmds, err
		}
		if r.err != nil {
			return nil, r.err
		}
		if r.start == r.end {
			r.start, r.end = 0, 0
			if len(r.buf) > maxIdleBufSize {
				r.buf = make([]byte, readBufSize)
			}
		}
		if r.end == len(r.buf) {
			if r.start > 0 {
				r.end = copy(r.buf, r.buf[r.start:r.end])
				r.start = 0
			} else {
				nb := make([]byte, 2*len(r.buf))
				copy(nb, r.buf[:r.end])
				r.buf = nb
			}
		}
		n, err := r.rd.Read(r.buf[r.end:])
		r.end += n
		r.err = err
	}
}

// parse parses the complete commands of buf[start:end].
func (r *reader) parse() ([][][]byte, error) {
	clear(r.args) // drop the previous pipeline's arguments
	r.args, r.cmdEnd = r.args[:0], r.cmdEnd[:0]
	b := r.buf[r.start:r.end]
	pos := 0
	for pos < len(b) {
		var n int
		var err error
		if b[pos] == '*' {
			n, err = r.multibulk(b[pos:])
		} else {
			n, err = r.inline(b[pos:])
		}
		if err != nil {
			r.args, r.cmdEnd = r.args[:0], r.cmdEnd[:0]
			return nil, err
		}
		if n == 0 {
			break // incomplete
		}
		pos += n
	}
	r.start += pos
	clear(r.cmds[:cap(r.cmds)])
	r.cmds = r.cmds[:0]
	from := 0
	for _, to := range r.cmdEnd {
		r.cmds = append(r.cmds, r.args[from:to:to])
		from = to
	}
	return r.cmds, nil
}

// multibulk parses one command "*<count>\r\n$<len>\r\n<arg>\r\n..." at the
// start of b. It returns the bytes it took, 0 when b holds only part of it.
// Its checks and errors are redcon's, in redcon's order.
func (r *reader) multibulk(b []byte) (int, error) {
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		return 0, nil
	}
	if b[eol-1] != '\r' { // eol > 0: b[0] is '*'
		return 0, errInvalidMultiBulkLength
	}
	count, ok := atoi(b[1 : eol-1])
	if !ok || count <= 0 {
		return 0, errInvalidMultiBulkLength
	}
	mark := len(r.args)
	i := eol
	for range count {
		i++
		if i >= len(b) {
			r.args = r.args[:mark]
			return 0, nil
		}
		if b[i] != '$' {
			r.args = r.args[:mark]
			return 0, &protocolError{"expected '$', got '" + string(rune(b[i])) + "'"}
		}
		si := i
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i >= len(b) {
			r.args = r.args[:mark]
			return 0, nil
		}
		if b[i-1] != '\r' {
			r.args = r.args[:mark]
			return 0, errInvalidBulkLength
		}
		size, ok := atoi(b[si+1 : i-1])
		if !ok || size < 0 {
			r.args = r.args[:mark]
			return 0, errInvalidBulkLength
		}
		if size >= len(b) || i+size+2 >= len(b) {
			r.args = r.args[:mark]
			return 0, nil
		}
		if b[i+size+2] != '\n' || b[i+size+1] != '\r' {
			r.args = r.args[:mark]
			return 0, errInvalidBulkLength
		}
		i++
		r.args = append(r.args, b[i:i+size:i+size])
		i += size + 1
	}
	r.cmdEnd = append(r.cmdEnd, len(r.args))
	return i + 1, nil
}

// errIncomplete is what redcon.Parse answers for a line of no arguments.
var errIncomplete = func() error {
	_, err := redcon.Parse([]byte("\r\n"))
	return err
}()

// inline parses one inline command, a line of space-separated arguments
// (quoted with " or '), at the start of b, with redcon's own parser. A line
// without arguments is skipped. It returns the bytes it took, 0 when the
// line is not complete.
func (r *reader) inline(b []byte) (int, error) {
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		return 0, nil
	}
	cmd, err := redcon.Parse(b[:eol+1])
	switch {
	case err == nil:
		r.args = append(r.args, cmd.Args...) // redcon copied them
		r.cmdEnd = append(r.cmdEnd, len(r.args))
	case errors.Is(err, errIncomplete):
	case err.Error() == errUnbalancedQuotes.Error():
		return 0, errUnbalancedQuotes
	default: // redcon.Parse has no other error for a line
		return 0, &protocolError{strings.TrimPrefix(err.Error(), "Protocol error: ")}
	}
	return eol + 1, nil
}

// atoi is redcon's parseInt: strconv.Atoi's syntax.
func atoi(b []byte) (int, bool) {
	if len(b) > 0 && len(b) < 10 {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				goto slow
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
slow:
	n, err := strconv.Atoi(unsafe.String(unsafe.SliceData(b), len(b)))
	return n, err == nil
}
