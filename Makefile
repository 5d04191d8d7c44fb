# otpgate: build, test, demonstrate, package.
#   make          build pam_otpgate.so, the otpgate command and the man pages
#   make demo     show the module at work through the real Linux-PAM library
#   make test     formatting, lints and every test (as root; sudo is used if needed)
#   make bench    otpgate beside pam_google_authenticator and pam_oath
#   make deb      a Debian package in target/debian/
#   make install / uninstall   [DESTDIR=... PREFIX=/usr]

CARGO    ?= cargo
PREFIX   ?= /usr
DESTDIR  ?=
MULTIARCH := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine)
PAMDIR   ?= /lib/$(MULTIARCH)/security
SBINDIR  ?= $(PREFIX)/sbin
MANDIR   ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc

ifeq ($(shell id -u),0)
AS_ROOT :=
else
AS_ROOT := sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME,CARGO_TARGET_DIR
endif

.PHONY: all build man deps demo test lint bench deb install uninstall clean

all: build man

build:
	$(CARGO) build --release --workspace
	cp target/release/libotpgate.so pam_otpgate.so

man:
	sh man/build.sh target/man

deps-%:
	sh scripts/install-deps.sh $*

demo: deps-demo
	$(CARGO) build --workspace
	$(AS_ROOT) target/debug/otpgate-demo target/debug/libotpgate.so

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features otpgate/test-hooks -- -D warnings

# The package is built first, once: tests/deb_package.rs installs it.
test: deps-test lint deb
	$(CARGO) build --workspace --features otpgate/test-hooks
	$(AS_ROOT) $(CARGO) test --workspace --features otpgate/test-hooks

bench: deps-bench
	$(CARGO) build --release --workspace
	$(AS_ROOT) sh bench/run.sh
	mkdir -p target/bench
	$(AS_ROOT) env OTPGATE_FLEET_LATENCY_OUT=$(CURDIR)/target/bench/fleet-latency.txt \
	  $(CARGO) test --release --test fleet_latency -- --nocapture

# build-deb.sh builds the release module, command and man pages itself.
deb: deps-deb
	sh packaging/build-deb.sh

# What `make install` copies; `make` builds them. install never builds, so
# that `sudo make install` does not run cargo as root.
BUILT := target/release/libotpgate.so target/release/otpgate target/man/otpgate.8 target/man/pam_otpgate.8

install:
	@for f in $(BUILT); do [ -e "$$f" ] || { echo "make install: $$f is missing; run 'make' first" >&2; exit 1; }; done
	install -d $(DESTDIR)$(PAMDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/otpgate
	install -m 0644 target/release/libotpgate.so $(DESTDIR)$(PAMDIR)/pam_otpgate.so
	install -m 0755 target/release/otpgate $(DESTDIR)$(SBINDIR)/otpgate
	install -m 0644 target/man/otpgate.8 target/man/pam_otpgate.8 $(DESTDIR)$(MANDIR)/man8/
	[ -e $(DESTDIR)$(SYSCONFDIR)/otpgate/otpgate.toml ] || install -m 0644 packaging/otpgate.toml $(DESTDIR)$(SYSCONFDIR)/otpgate/otpgate.toml
	install -d -m 0700 $(DESTDIR)/var/lib/otpgate

uninstall:
	rm -f $(DESTDIR)$(PAMDIR)/pam_otpgate.so $(DESTDIR)$(SBINDIR)/otpgate
	rm -f $(DESTDIR)$(MANDIR)/man8/otpgate.8 $(DESTDIR)$(MANDIR)/man8/pam_otpgate.8
	@echo "Kept $(SYSCONFDIR)/otpgate and /var/lib/otpgate (configuration and secrets); remove them by hand if wanted."
	@if grep -ls '^[^#]*pam_otpgate\.so' $(DESTDIR)/etc/pam.d/* 2>/dev/null; then \
		echo "WARNING: the PAM files above still use pam_otpgate.so; logins through them now fail." >&2; fi

clean:
	$(CARGO) clean
	rm -f pam_otpgate.so
