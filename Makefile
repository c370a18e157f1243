VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     ?= bin
CONFIG  ?= /etc/livecgi/livecgi.conf
LDFLAGS := -s -w -X main.version=$(VERSION) -X github.com/livecgi/livecgi/cgi.ConfigPath=$(CONFIG)
GOBUILD := CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags '$(LDFLAGS)'
comma   := ,
# grpcnotrace: gRPC without golang.org/x/net/trace and the html/template it
# brings (gRPC tracing is never enabled here): 390 KB less in the armv7
# livecgid, and in each plugin. Exported: the builds the tests make get it.
export GOFLAGS := $(strip $(GOFLAGS) -tags=grpcnotrace)
# BUILTIN: the plugins built into livecgid (cmd/livecgid/plugin.go); the
# plugins dir holds a link to livecgid for each. PLUGINS: the other plugin
# directories (yours, dropped into plugins/), each built into a binary of
# its own by make plugins.
BUILTIN := system leds exec
PLUGINS := $(patsubst %/,%,$(filter-out plugins/sdk/ plugins/bench/ $(patsubst %,plugins/%/,$(BUILTIN)),$(wildcard plugins/*/)))

.PHONY: all build plugins demo install check-arch test proto lint size clean bench bench-compare bench-fleet soak cross cross-test bench-deps
all: build

build: plugins
	$(GOBUILD) -o $(BIN)/ ./cmd/livecgid
	$(GOBUILD) -o $(BIN)/live.cgi ./cmd/live.cgi
	for p in $(BUILTIN); do ln -sfn ../livecgid $(BIN)/plugins/$$p; done

# plugins: each directory of PLUGINS into $(BIN)/plugins/<its name>, as
# a package of this module, or as a module of its own when it has a
# go.mod. Its version is its own, never this repository's: the first line
# of its VERSION file, else git describe when it is a repository of its
# own, else the version its source declares (nothing is stamped).
plugins:
	@mkdir -p $(BIN)/plugins
	@set -e; for p in $(PLUGINS); do \
	  v=$$(head -n 1 "$$p/VERSION" 2>/dev/null || { [ -e "$$p/.git" ] && git -C "$$p" describe --tags --always --dirty; } || true); \
	  flags="-s -w$${v:+ -X main.version=$$v}"; \
	  if [ -f "$$p/go.mod" ]; then \
	    echo "(cd $$p && go build -ldflags '$$flags' -o $(abspath $(BIN))/plugins/$$(basename $$p) .)"; \
	    (cd "$$p" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "$$flags" -o "$(abspath $(BIN))/plugins/$$(basename $$p)" .); \
	  else \
	    case "$$p" in /*) pkg=$$p;; *) pkg=./$$p;; esac; \
	    echo "go build -ldflags '$$flags' -o $(BIN)/plugins/$$(basename $$p) $$pkg"; \
	    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "$$flags" -o "$(BIN)/plugins/$$(basename $$p)" "$$pkg"; \
	  fi; \
	done

# test: the whole suite. As root it first lets the kernel run arm binaries
# through qemu-user-static (binfmt.sh: the arm tests that exec arm
# binaries need it); otherwise those tests say how, and skip.
test:
	@sh cmd/livecgi-bench/binfmt.sh || true
	go test -race -timeout=20m ./...

# demo: live.cgi under busybox httpd on 127.0.0.1:$(PORT) (PORT=0: a free
# port), everything under $(BIN)/demo: its livecgi.conf (kept once
# edited) and exec.d/ (laid out once). Ctrl-C (or kill -INT of make) stops
# httpd and the supervisor. TARGET=armv7 (any name in CROSS) runs that
# target's binaries, the ones make install installs, under qemu-user
# through binfmt_misc, registered here when run as root (binfmt.sh).
PORT ?= 8080
DEMO  = $(abspath $(BIN))/demo
demo:
	@echo "make demo: the first run compiles livecgid, live.cgi and the plugins (a few minutes)..."
	$(if $(TARGET),@sh cmd/livecgi-bench/binfmt.sh || true)
	@$(MAKE) --no-print-directory build
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X main.version=$(VERSION) -X github.com/livecgi/livecgi/cgi.ConfigPath=$(DEMO)/livecgi.conf' \
	  -o $(DEMO)/www/cgi-bin/live.cgi ./cmd/live.cgi
	ln -sf live.cgi $(DEMO)/www/cgi-bin/nph-live.cgi
	env -u GOARCH -u GOARM -u GOMIPS go build -o $(DEMO)/run ./cgi/testdata/demo
	exec $(DEMO)/run -bin $(BIN) -dir $(DEMO) -port $(PORT)

# install: make install TARGET=armv7 DESTDIR=/path/to/rootfs builds for a
# board (TARGET: a name in CROSS; none: this machine) into
# bin/linux_<TARGET>, checks that every binary is an ELF file for that
# architecture, and lays out the device's files; an existing livecgi.conf
# is kept. BIN=bin/linux_<name> alone implies TARGET=<name>. The state dir
# (state_dir's default) belongs to WWW_USER, the user the web server runs
# CGIs as (a name or a uid, as on the device): a tmpfiles.d line makes it
# at boot (/var/run is a tmpfs), and as root it is made now too.
WWW_USER  ?= nobody
STATE_DIR := /var/run/livecgi
install: build
	@$(MAKE) --no-print-directory check-arch
	install -d $(DESTDIR)/usr/sbin $(DESTDIR)/usr/lib/livecgi/plugins $(DESTDIR)/usr/lib/cgi-bin $(DESTDIR)/etc/livecgi $(DESTDIR)/usr/lib/tmpfiles.d
	install -m 0755 $(BIN)/livecgid $(DESTDIR)/usr/sbin/livecgid
	for f in $(BIN)/plugins/*; do [ -L "$$f" ] || install -m 0755 "$$f" $(DESTDIR)/usr/lib/livecgi/plugins/; done
	for p in $(BUILTIN); do ln -sfn /usr/sbin/livecgid $(DESTDIR)/usr/lib/livecgi/plugins/$$p; done
	install -m 0755 $(BIN)/live.cgi $(DESTDIR)/usr/lib/cgi-bin/live.cgi
	ln -sf live.cgi $(DESTDIR)/usr/lib/cgi-bin/nph-live.cgi
	test -e $(DESTDIR)/etc/livecgi/livecgi.conf || install -m 0644 proto/config/sample.conf $(DESTDIR)/etc/livecgi/livecgi.conf
	echo "d $(STATE_DIR) 0700 $(WWW_USER) - -" >$(DESTDIR)/usr/lib/tmpfiles.d/livecgi.conf
	if [ "$$(id -u)" = 0 ]; then install -d -m 0700 -o $(WWW_USER) $(DESTDIR)$(STATE_DIR); \
	  else echo "not root: create $(STATE_DIR) for $(WWW_USER) on the device (see cmd/livecgid/README.md)"; fi

# check-arch: every binary under $(BIN) is an ELF executable for the
# GOARCH being built (e_machine and byte order, read with od).
check-arch:
	@want=$$(go env GOARCH); for f in $(BIN)/livecgid $(BIN)/live.cgi $(BIN)/plugins/*; do \
	  got=$$(od -An -tu1 -N20 "$$f" | tr -s ' \n' '  ' | awk '{ \
	    if ($$1 != 127 || $$2 != 69 || $$3 != 76 || $$4 != 70) { print "not-ELF"; exit } \
	    le = ($$6 == 1); m = le ? $$19 + 256*$$20 : 256*$$19 + $$20; b64 = ($$5 == 2); \
	    a = m == 62 ? "amd64" : m == 3 ? "386" : m == 40 ? "arm" : m == 183 ? "arm64" : m == 243 ? "riscv64" : \
	        m == 21 ? (le ? "ppc64le" : "ppc64") : m == 22 ? "s390x" : \
	        m == 8 ? (b64 ? "mips64" : "mips") (le ? "le" : "") : "machine-" m; print a }'); \
	  [ "$$got" = "$$want" ] || { echo "$$f: $$got binary, want $$want: not installing" >&2; exit 1; }; \
	done; echo "check-arch: $(BIN) holds $$want binaries"

proto:
	protoc --plugin=protoc-gen-go="$$(go tool -n protoc-gen-go)" \
	  --plugin=protoc-gen-go-grpc="$$(go tool -n protoc-gen-go-grpc)" \
	  --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative proto/*.proto

lint:
	test -z "$$(gofmt -l .)"
	go vet ./...
	go tool staticcheck ./...

# size: every binary under $(BIN) against its budget (stripped): stub
# 3.5 MiB (3.25 on mipsle: auth, long polling and the nph hand-over grew it
# from 2.6), supervisor with the built-in plugins 16 MiB, each other plugin
# 14 MiB; then the total of each install (livecgid, live.cgi and plugins/
# beside it; links count nothing): 16 MiB. Fails if one is over.
size:
	@find $(BIN) -type f -perm -u+x | sort | xargs ls -l | awk '{ \
	  b = ""; if ($$9 ~ /live\.cgi$$/) b = 3.5; else if ($$9 ~ /livecgid$$/) b = 16; else if ($$9 ~ /\/plugins\//) b = 14; \
	  mib = $$5/1048576; flag = (b != "" && mib > b) ? "  OVER BUDGET" : ""; if (flag != "") bad = 1; \
	  printf "%8.2f MiB  %-48s %s%s\n", mib, $$9, (b != "" ? "budget " b " MiB" : ""), flag; \
	  if (b != "") { d = $$9; if (d ~ /\/plugins\/[^\/]*$$/) sub(/\/plugins\/[^\/]*$$/, "", d); else sub(/\/?[^\/]*$$/, "", d); \
	    tot[d] += mib; if ($$9 ~ /livecgid$$/) has[d] = 1 } } \
	  END { for (d in tot) if (has[d]) { flag = tot[d] > 16 ? "  OVER BUDGET" : ""; if (flag != "") bad = 1; \
	    printf "%8.2f MiB  %-48s budget 16 MiB%s\n", tot[d], "total " (d == "" ? "." : d), flag } exit bad }'

# cross: every binary for each target under bin/linux_<arch>[v5|v7]/.
CROSS := armv5:GOARCH=arm,GOARM=5 armv7:GOARCH=arm,GOARM=7 arm64:GOARCH=arm64 \
         mipsle:GOARCH=mipsle,GOMIPS=softfloat riscv64:GOARCH=riscv64
cross:
	@set -e; for t in $(CROSS); do \
	  name=$${t%%:*}; env=$$(echo $${t#*:} | tr , ' '); \
	  echo "== linux_$$name ($$env)"; \
	  env $$env $(MAKE) --no-print-directory build BIN=bin/linux_$$name; \
	done

# TARGET=<name in CROSS> (or BIN=bin/linux_<name>) builds for that target.
ifeq ($(TARGET),)
TARGET := $(patsubst linux_%,%,$(filter linux_%,$(notdir $(patsubst %/,%,$(BIN)))))
endif
ifneq ($(TARGET),)
TENV := $(subst $(comma), ,$(patsubst $(TARGET):%,%,$(filter $(TARGET):%,$(CROSS))))
ifeq ($(TENV),)
$(error TARGET=$(TARGET): want one of $(foreach t,$(CROSS),$(firstword $(subst :, ,$(t)))))
endif
BIN := bin/linux_$(TARGET)
$(foreach kv,$(TENV),$(eval export $(kv)))
endif

# cross-test: arm and arm64 test binaries under qemu-user-static, and the
# arm stub → supervisor → plugin → client run (binfmt_misc, root).
cross-test:
	@command -v qemu-arm-static >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q --no-install-recommends qemu-user-static; }
	sh cmd/livecgi-bench/binfmt.sh
	go test -count=1 -v -timeout=30m -run 'Qemu' ./cmd/livecgi-bench/

# bench: the Go benchmarks (BenchmarkFanout…); compare runs with benchstat.
BENCHCOUNT ?= 6
bench:
	@mkdir -p $(BIN)
	go test -run='^$$' -bench=. -benchmem -count=$(BENCHCOUNT) -timeout=60m ./... | tee $(BIN)/bench-new.txt

bench-deps:
	@command -v busybox >/dev/null && command -v websocketd >/dev/null && command -v gcc >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get install -y -q --no-install-recommends busybox websocketd gcc; } || \
	  { echo "need busybox, websocketd and gcc: apt-get install busybox websocketd gcc" >&2; exit 1; }

# bench-compare: livecgi, websocketd, long polling and a bare server side by
# side (about 10 minutes); writes cmd/livecgi-bench/results/.
bench-compare: bench-deps
	go build -o $(BIN)/livecgi-bench ./cmd/livecgi-bench
	ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	  $(BIN)/livecgi-bench compare -out cmd/livecgi-bench/results $(BENCHFLAGS)

# bench-fleet: 50 supervisors, each with its own device_id and a 10 Hz
# bench sensor, bridged into one Mosquitto (apt-get install mosquitto):
# readings/s through the broker, latency sensor → subscriber, device CPU
# per reading. BENCHFLAGS="-n 20 -duration 1m"; livecgi-bench fleet -h.
bench-fleet:
	go build -o $(BIN)/livecgi-bench ./cmd/livecgi-bench
	$(BIN)/livecgi-bench fleet $(BENCHFLAGS)

# soak: 500 livecgi clients for 30 minutes with the field's churn (not in
# CI): 10 % of them vanish without a close frame and reconnect every 10 s,
# the plugin is swapped every minute and SIGKILLed every 5, a flooder and a
# header bomber; a row per minute (livecgid's fds, goroutines, RSS; what the
# legitimate clients received) and first/last/max at the end.
# SOAKFLAGS=-d 5m to shorten, -churn=false for clients only; livecgi-bench
# soak -h for the periods and counts.
soak: bench-deps
	go build -o $(BIN)/livecgi-bench ./cmd/livecgi-bench
	ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	  $(BIN)/livecgi-bench soak -churn -n 500 -d 30m $(SOAKFLAGS)

clean:
	rm -rf $(BIN)
