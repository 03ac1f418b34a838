module github.com/countmesh/countmesh

go 1.26
