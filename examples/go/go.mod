module github.com/sluice-db/sluice/examples/go

go 1.19

require github.com/sluice-db/sluice/clients/go v0.0.0

replace github.com/sluice-db/sluice/clients/go => ../../clients/go
