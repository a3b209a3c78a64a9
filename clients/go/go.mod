module github.com/mapscope/mapscope/clients/go

go 1.22
