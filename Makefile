VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     ?= bin
CONFIG  ?= /etc/livecgi/livecgi.conf
LDFLAGS := -s -w -X main.version=$(VERSION) -X github.com/livecgi/livecgi/cgi.ConfigPath=$(CONFIG)
GOBUILD := CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags '$(LDFLAGS)'
PLUGINS := $(patsubst %/,%,$(filter-out plugins/sdk/,$(wildcard plugins/*/)))

.PHONY: all build demo test proto lint size clean
all: build

build:
	$(GOBUILD) -o $(BIN)/ ./cmd/livecgid
	$(GOBUILD) -o $(BIN)/live.cgi ./cmd/live.cgi
	$(GOBUILD) -o $(BIN)/plugins/ $(addprefix ./,$(PLUGINS))

test:
	go test -race -timeout=20m ./...

proto:
	protoc --plugin=protoc-gen-go="$$(go tool -n protoc-gen-go)" \
	  --plugin=protoc-gen-go-grpc="$$(go tool -n protoc-gen-go-grpc)" \
	  --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative proto/*.proto

lint:
	test -z "$$(gofmt -l .)"
	go vet ./...
	go tool staticcheck ./...

size:
	@find $(BIN) -type f -perm -u+x | sort | xargs ls -l | awk '{printf "%8.2f MiB  %s\n", $$5/1048576, $$9}'

clean:
	rm -rf $(BIN)
