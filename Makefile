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

test: deps-test lint
	$(CARGO) build --workspace --features otpgate/test-hooks
	$(AS_ROOT) $(CARGO) test --workspace --features otpgate/test-hooks

bench: deps-bench
	$(CARGO) build --release --workspace
	$(AS_ROOT) sh bench/run.sh

deb: deps-deb build man
	sh packaging/build-deb.sh

install: build man
	install -d $(DESTDIR)$(PAMDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/otpgate
	install -m 0644 pam_otpgate.so $(DESTDIR)$(PAMDIR)/pam_otpgate.so
	install -m 0755 target/release/otpgate $(DESTDIR)$(SBINDIR)/otpgate
	install -m 0644 target/man/otpgate.8 target/man/pam_otpgate.8 $(DESTDIR)$(MANDIR)/man8/
	[ -e $(DESTDIR)$(SYSCONFDIR)/otpgate/otpgate.toml ] || install -m 0644 packaging/otpgate.toml $(DESTDIR)$(SYSCONFDIR)/otpgate/otpgate.toml
	install -d -m 0700 $(DESTDIR)/var/lib/otpgate

uninstall:
	rm -f $(DESTDIR)$(PAMDIR)/pam_otpgate.so $(DESTDIR)$(SBINDIR)/otpgate
	rm -f $(DESTDIR)$(MANDIR)/man8/otpgate.8 $(DESTDIR)$(MANDIR)/man8/pam_otpgate.8
	@echo "Kept $(SYSCONFDIR)/otpgate and /var/lib/otpgate (configuration and secrets); remove them by hand if wanted."

clean:
	$(CARGO) clean
	rm -f pam_otpgate.so
