# Installation: included from the Makefile. It builds yggd and ygg with the
# installation paths and branding set at link time (-ldflags -X into
# yggdrasil/build), generates the man pages and bash completions from the
# programs themselves, fills in the data/*.in templates, and installs
# everything under $(DESTDIR)$(PREFIX).
#
#   make install PREFIX=/usr DESTDIR=/tmp/stage
#   PKG_CONFIG_PATH=/tmp/stage/usr/share/pkgconfig pkg-config --variable workerexecdir yggdrasil
#
# Every variable below can be overridden on the command line. It also works
# on its own: make -f mk/install.mk install. As with meson, PREFIX=/usr puts
# the configuration in /etc and the state in /var; any other prefix keeps
# them under it ($(PREFIX)/etc, $(PREFIX)/var).
#
# BROKER is the broker the installed config.toml connects to; a
# distribution or provider sets its own, for example
#   make install BROKER=wss://connect.cloud.redhat.com:443 TOPICPREFIX=redhat/insights ...
# Its default is a TLS broker on this host (yggsim serve's --mqtts), whose
# certificate must be trusted (ca-root). yggdrasil 0.1.x installed
# tcp://test.mosquitto.org:1883, a public broker anyone can publish to: a
# root daemon whose workers manage the host must not listen there. Nor on a
# plain tcp://localhost, where any local user who binds the port first
# gives it orders.

GO            ?= go
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
SHORTNAME     ?= ygg
LONGNAME      ?= yggdrasil
BRANDNAME     ?= yggdrasil
PROVIDER      ?=
TOPICPREFIX   ?= yggdrasil
DATAHOST      ?=
BROKER        ?= ssl://localhost:8883
PREFIX        ?= /usr/local
BINDIR        ?= $(PREFIX)/bin
SBINDIR       ?= $(PREFIX)/sbin
LIBEXECDIR    ?= $(PREFIX)/libexec
SYSCONFDIR    ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
DATAROOTDIR   ?= $(PREFIX)/share
DATADIR       ?= $(DATAROOTDIR)
MANDIR        ?= $(DATAROOTDIR)/man
DOCDIR        ?= $(DATAROOTDIR)/doc/$(LONGNAME)
LOCALSTATEDIR ?= $(if $(filter /usr,$(PREFIX)),/var,$(PREFIX)/var)
PKGCONFIGDIR  ?= $(DATAROOTDIR)/pkgconfig
BASHCOMPDIR   ?= $(DATAROOTDIR)/bash-completion/completions
# systemd's own answer when its .pc file is installed, else under PREFIX.
SYSTEMDUNITDIR ?= $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),$(PREFIX)/lib/systemd/system)
WORKERDIR     := $(LIBEXECDIR)/$(LONGNAME)
WORKERCONFDIR := $(SYSCONFDIR)/$(LONGNAME)/workers
INSTALL       ?= install
STAGE         ?= $(CURDIR)/bin/stage

BUILDPKG := github.com/ygglab/yggdrasil/yggdrasil/build
INSTALL_LDFLAGS := \
	-X '$(BUILDPKG).Version=$(VERSION)' \
	-X '$(BUILDPKG).ShortName=$(SHORTNAME)' \
	-X '$(BUILDPKG).LongName=$(LONGNAME)' \
	-X '$(BUILDPKG).BrandName=$(BRANDNAME)' \
	-X '$(BUILDPKG).Provider=$(PROVIDER)' \
	-X '$(BUILDPKG).TopicPrefix=$(TOPICPREFIX)' \
	-X '$(BUILDPKG).DataHost=$(DATAHOST)' \
	-X '$(BUILDPKG).PrefixDir=$(PREFIX)' \
	-X '$(BUILDPKG).BinDir=$(BINDIR)' \
	-X '$(BUILDPKG).SbinDir=$(SBINDIR)' \
	-X '$(BUILDPKG).LibexecDir=$(LIBEXECDIR)' \
	-X '$(BUILDPKG).SysconfDir=$(SYSCONFDIR)' \
	-X '$(BUILDPKG).DataDir=$(DATADIR)' \
	-X '$(BUILDPKG).DatarootDir=$(DATAROOTDIR)' \
	-X '$(BUILDPKG).ManDir=$(MANDIR)' \
	-X '$(BUILDPKG).DocDir=$(DOCDIR)' \
	-X '$(BUILDPKG).LocalstateDir=$(LOCALSTATEDIR)'

SUBST := sed \
	-e 's|@SHORTNAME@|$(SHORTNAME)|g' \
	-e 's|@LONGNAME@|$(LONGNAME)|g' \
	-e 's|@BRANDNAME@|$(BRANDNAME)|g' \
	-e 's|@TOPICPREFIX@|$(TOPICPREFIX)|g' \
	-e 's|@DATAHOST@|$(DATAHOST)|g' \
	-e 's|@BROKER@|$(BROKER)|g' \
	-e 's|@VERSION@|$(VERSION)|g' \
	-e 's|@PREFIX@|$(PREFIX)|g' \
	-e 's|@SBINDIR@|$(SBINDIR)|g' \
	-e 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' \
	-e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	-e 's|@WORKERDIR@|$(WORKERDIR)|g' \
	-e 's|@LOCALSTATEDIR@|$(LOCALSTATEDIR)|g'

.PHONY: stage
stage: ## build what install installs into ./bin/stage (programs, man pages, completions, data)
	@test -n "$(BROKER)" || { echo "BROKER is empty: set it to the broker the installed config.toml connects to" >&2; exit 1; }
	@rm -rf $(STAGE) && mkdir -p $(STAGE)/man $(STAGE)/completion $(STAGE)/data
	$(GO) build -trimpath -tags '$(GOTAGS)' -ldflags "$(INSTALL_LDFLAGS)" -o $(STAGE)/$(SHORTNAME) ./cmd/ygg
	$(GO) build -trimpath -tags '$(GOTAGS)' -ldflags "$(INSTALL_LDFLAGS)" -o $(STAGE)/$(SHORTNAME)d ./cmd/yggd
	$(STAGE)/$(SHORTNAME) --generate-man-page > $(STAGE)/man/$(SHORTNAME).1
	$(STAGE)/$(SHORTNAME) --generate-bash-completion > $(STAGE)/completion/$(SHORTNAME)
	@# yggd's generators may not exist yet: warn, do not fail.
	@$(STAGE)/$(SHORTNAME)d --generate-man-page > $(STAGE)/man/$(SHORTNAME)d.1 2>/dev/null \
		|| { echo "warning: $(SHORTNAME)d --generate-man-page failed; not installing $(SHORTNAME)d.1" >&2; rm -f $(STAGE)/man/$(SHORTNAME)d.1; }
	@$(STAGE)/$(SHORTNAME)d --generate-bash-completion > $(STAGE)/completion/$(SHORTNAME)d 2>/dev/null \
		&& grep -q '^complete ' $(STAGE)/completion/$(SHORTNAME)d \
		|| { echo "warning: $(SHORTNAME)d --generate-bash-completion gave no completion script; not installing it" >&2; rm -f $(STAGE)/completion/$(SHORTNAME)d; }
	$(SUBST) data/systemd/yggd.service.in > $(STAGE)/data/$(SHORTNAME)d.service
	$(SUBST) data/yggdrasil/config.toml.in > $(STAGE)/data/config.toml
	$(SUBST) data/pkgconfig/yggdrasil.pc.in > $(STAGE)/data/$(LONGNAME).pc

.PHONY: install
install: stage ## install yggd, ygg, the unit, config, pkg-config file, man pages, completions (PREFIX=, DESTDIR=)
	$(INSTALL) -D -m 0755 $(STAGE)/$(SHORTNAME) $(DESTDIR)$(BINDIR)/$(SHORTNAME)
	$(INSTALL) -D -m 0755 $(STAGE)/$(SHORTNAME)d $(DESTDIR)$(SBINDIR)/$(SHORTNAME)d
	$(INSTALL) -D -m 0644 $(STAGE)/data/$(SHORTNAME)d.service $(DESTDIR)$(SYSTEMDUNITDIR)/$(SHORTNAME)d.service
	@# The configuration is the administrator's once installed: never overwrite it.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/$(LONGNAME)/config.toml ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/$(LONGNAME)/config.toml"; \
	else \
		echo "$(INSTALL) -D -m 0644 $(STAGE)/data/config.toml $(DESTDIR)$(SYSCONFDIR)/$(LONGNAME)/config.toml"; \
		$(INSTALL) -D -m 0644 $(STAGE)/data/config.toml $(DESTDIR)$(SYSCONFDIR)/$(LONGNAME)/config.toml; \
	fi
	$(INSTALL) -D -m 0644 $(STAGE)/data/$(LONGNAME).pc $(DESTDIR)$(PKGCONFIGDIR)/$(LONGNAME).pc
	$(INSTALL) -d -m 0755 $(DESTDIR)$(WORKERDIR) $(DESTDIR)$(WORKERCONFDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR)
	for f in $(STAGE)/man/*.1; do gzip -9 -n -c $$f > $(DESTDIR)$(MANDIR)/man1/$$(basename $$f).gz; done
	for f in $(STAGE)/completion/*; do $(INSTALL) -m 0644 $$f $(DESTDIR)$(BASHCOMPDIR)/; done

.PHONY: uninstall
uninstall: ## remove what install installed, except the configuration file (PREFIX=, DESTDIR=)
	rm -f $(DESTDIR)$(BINDIR)/$(SHORTNAME) $(DESTDIR)$(SBINDIR)/$(SHORTNAME)d \
		$(DESTDIR)$(SYSTEMDUNITDIR)/$(SHORTNAME)d.service $(DESTDIR)$(PKGCONFIGDIR)/$(LONGNAME).pc \
		$(DESTDIR)$(MANDIR)/man1/$(SHORTNAME).1.gz $(DESTDIR)$(MANDIR)/man1/$(SHORTNAME)d.1.gz \
		$(DESTDIR)$(BASHCOMPDIR)/$(SHORTNAME) $(DESTDIR)$(BASHCOMPDIR)/$(SHORTNAME)d
	-rmdir $(DESTDIR)$(WORKERDIR) $(DESTDIR)$(WORKERCONFDIR) 2>/dev/null
