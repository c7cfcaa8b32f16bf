module github.com/sluice-db/sluice/clients/go

go 1.19
