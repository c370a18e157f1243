VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     ?= bin
CONFIG  ?= /etc/livecgi/livecgi.conf
LDFLAGS := -s -w -X main.version=$(VERSION) -X github.com/livecgi/livecgi/cgi.ConfigPath=$(CONFIG)
GOBUILD := CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags '$(LDFLAGS)'
PLUGINS := $(patsubst %/,%,$(filter-out plugins/sdk/,$(wildcard plugins/*/)))

.PHONY: all build demo install test proto lint size clean
all: build

build:
	$(GOBUILD) -o $(BIN)/ ./cmd/livecgid
	$(GOBUILD) -o $(BIN)/live.cgi ./cmd/live.cgi
	$(GOBUILD) -o $(BIN)/plugins/ $(addprefix ./,$(PLUGINS))

test:
	go test -race -timeout=20m ./...

# demo: live.cgi under busybox httpd on 127.0.0.1:$(PORT) (PORT=0: a free
# port), everything under $(BIN)/demo; Ctrl-C stops httpd and the supervisor.
PORT ?= 8080
DEMO  = $(abspath $(BIN))/demo
demo: build
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X main.version=$(VERSION) -X github.com/livecgi/livecgi/cgi.ConfigPath=$(DEMO)/livecgi.conf' \
	  -o $(DEMO)/www/cgi-bin/live.cgi ./cmd/live.cgi
	go build -o $(DEMO)/run ./cgi/testdata/demo
	$(DEMO)/run -bin $(BIN) -dir $(DEMO) -port $(PORT)

# install: make install DESTDIR=/tmp/root lays out the device's files; an
# existing livecgi.conf is kept.
install: build
	install -d $(DESTDIR)/usr/sbin $(DESTDIR)/usr/lib/livecgi/plugins $(DESTDIR)/usr/lib/cgi-bin $(DESTDIR)/etc/livecgi
	install -m 0755 $(BIN)/livecgid $(DESTDIR)/usr/sbin/livecgid
	install -m 0755 $(BIN)/plugins/* $(DESTDIR)/usr/lib/livecgi/plugins/
	install -m 0755 $(BIN)/live.cgi $(DESTDIR)/usr/lib/cgi-bin/live.cgi
	test -e $(DESTDIR)/etc/livecgi/livecgi.conf || install -m 0644 proto/control/sample.conf $(DESTDIR)/etc/livecgi/livecgi.conf

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
