# lay7.ha developer entry points. Every target installs what it needs on first use:
# a virtualenv from requirements.txt and the Debian packages the tests drive.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      ?= python3
BIN         := $(CURDIR)/$(VENV)/bin
COLL_LINK   := .collections/ansible_collections/lay7/ha
SYSTEM_PKGS := haproxy debootstrap systemd-container iproute2 nftables openssh-client curl wrk rsync
# The HTTPS checks on the lab: a real browser, and certutil to make it trust the lab CA.
BROWSER_PKGS := chromium libnss3-tools
SCAN_VENV   := build/scan-venv
BUILDER_VENV := build/builder-venv

export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: test-debian12 test-debian13 help venv deps browser scan-tools builder-tools collection role-docs lint unit unit-2.16 unit-2.19 integration integration-timed integration-untimed sanity sanity-2.16 sanity-2.19 build lab-tests molecule-lab test checks lab-converged lab-verified test-extended test-vagrant demo bench clean

help:
	@echo "make demo   - boot the lab, deploy the topology, print the proof"
	@echo "make test   - lint, unit, sanity, integration, lab tool, lab (molecule test -s lab, core verification)"
	@echo "make test-extended - molecule test -s lab with every verification scenario (not in make test)"
	@echo "make bench  - benchmarks, results written to bench/results/"
	@echo "make docs   - the HTML documentation site (antsibull-docs) in build/docs/html; make docs-lint only lints it"
	@echo "make test-vagrant - molecule test -s vagrant on libvirt (slow; not in make test)"
	@echo "make vagrant-e2e - the root Vagrantfile end to end on libvirt: vagrant up, site.yml, checks through the VIP, destroy (slow; not in make test)"
	@echo "make test-debian12 / test-debian13 - molecule test -s lab with all five hosts on one Debian release (make test runs them mixed)"

$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.stamp

# The ansible-core support matrix (README, "Support matrix"): the unit tests and ansible-test
# sanity run on the oldest and the newest core meta/runtime.yml admits, each in a virtualenv of
# its own made from tests/core/<core>.txt, where the core is pinned, and made anew when that file
# changes (build/core-<core> links to it in the machine's cache: tools/cached_venv.sh, as for the
# other tool virtualenvs below). .venv stays the tools' virtualenv (lint, integration, Molecule).
# The version check catches a file that pins another core than its name says.
CORES        := 2.16 2.19
UNIT_CORES   := $(addprefix unit-,$(CORES))
SANITY_CORES := $(addprefix sanity-,$(CORES))
.PRECIOUS: build/core-%/.stamp

build/core-%/.stamp: tests/core/%.txt
	tools/cached_venv.sh build/core-$* $<
	build/core-$*/bin/python -c 'import sys, ansible.release as r; sys.exit(0 if r.__version__.startswith("$*.") else "$<: installs ansible-core " + r.__version__)'
	touch $@

# Debian packages the tests need (haproxy for the loopback integration test, the
# lab substrate for the molecule scenario). Installed only when something is missing.
deps:
	@missing=""; for p in $(SYSTEM_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

browser:
	@missing=""; for p in $(BROWSER_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

# Prometheus for the monitoring tests: promtool checks and unit-tests the shipped alerting rules
# (integration), and the server itself scrapes the lab's load balancers (verify). Only the
# binaries are wanted, run by the tests: installing Debian's package would also start and enable
# prometheus.service (a server of its own on port 9090) and pull prometheus-node-exporter (a
# Recommends). So: no recommends; a policy-rc.d that refuses every start for the length of the
# install, unless the machine has one of its own (a container image's, which refuses already);
# the unit disabled afterwards, so no boot starts it either (and stopped, should a policy of the
# machine's own have let it start).
.PHONY: prometheus
prometheus:
	@dpkg-query -W -f='$${Status}' prometheus 2>/dev/null | grep -q "ok installed" || { \
	  echo "installing: prometheus (promtool; prometheus.service neither started nor enabled)"; \
	  mine=""; if [ ! -e /usr/sbin/policy-rc.d ]; then mine=1; printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; fi; \
	  trap '[ -z "$$mine" ] || rm -f /usr/sbin/policy-rc.d' EXIT; \
	  apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  systemctl disable prometheus.service >/dev/null 2>&1; if [ -d /run/systemd/system ]; then systemctl stop prometheus.service; fi; }

# sslyze, the TLS scanner of the HTTPS tests, in a virtualenv of its own.
$(SCAN_VENV)/.stamp: tests/scan-requirements.txt
	tools/cached_venv.sh $(SCAN_VENV) $<
	touch $@

scan-tools: $(SCAN_VENV)/.stamp

# ansible-builder, for the execution-environment test (docs/awx.md), in a virtualenv of its own.
$(BUILDER_VENV)/.stamp: tests/builder-requirements.txt
	tools/cached_venv.sh $(BUILDER_VENV) $<
	touch $@

builder-tools: $(BUILDER_VENV)/.stamp

# The repository is the collection; link it where Ansible looks for lay7.ha.
collection:
	@mkdir -p $(dir $(COLL_LINK)); [ -L $(COLL_LINK) ] || ln -sfn ../../.. $(COLL_LINK)

# ansible-lint gets an Ansible home of its own: a copy of this collection installed in
# ~/.ansible/collections (an older build, from any earlier run on the machine) would otherwise
# be what it resolves lay7.ha modules from, and a module added since then "does not exist".
lint: venv collection
	yamllint -s .
	ANSIBLE_HOME=$(CURDIR)/build/ansible-home ansible-lint --offline

# The role READMEs' variable tables, from meta/argument_specs.yml (a unit test checks them).
role-docs: venv
	$(BIN)/python tools/role_tables.py

# The documentation site (antsibull-docs, Sphinx) from a virtualenv of its own, made anew when
# tests/docs-requirements.txt changes. antsibull-docs runs .venv's ansible-doc (on PATH), so the
# site documents the collection as the ansible-core it is tested with reads it.
DOCS_VENV := build/docs-venv
DOCS_BIN  := $(CURDIR)/$(DOCS_VENV)/bin
DOCS_DIR  := build/docs
.PHONY: docs docs-lint docs-tools

$(DOCS_VENV)/.stamp: tests/docs-requirements.txt
	tools/cached_venv.sh $(DOCS_VENV) $<
	touch $@

docs-tools: $(DOCS_VENV)/.stamp

# Any finding fails: the plugins' DOCUMENTATION, EXAMPLES and RETURN and the roles'
# argument_specs against antsibull-docs' schema, their markup, rstcheck on the pages made from
# them, docs/docsite, and every reference (M(), O(), :ansplugin:) to something that does not
# exist, in this collection, ansible.builtin or one not installed.
docs-lint: venv collection docs-tools
	$(DOCS_BIN)/antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs \
	  --validate-collection-refs all --disallow-unknown-collection-refs $(COLL_LINK)

# The HTML site, build/docs/html: the layout `antsibull-docs sphinx-init` writes (what its
# requirements.txt asks for must be in the docs virtualenv already: pip --no-index), made to build
# offline (tools/docs_site.py prepare), its build.sh (antsibull-docs collection --fail-on-error,
# sphinx-build -W: a warning fails), then checked: every plugin, role, entry point, option and
# return value is on its page, and the guide names every shipped guide (tools/docs_site.py check).
docs: docs-lint
	rm -rf $(DOCS_DIR) && mkdir -p -m 0700 $(DOCS_DIR)/site
	$(DOCS_BIN)/antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error --project lay7.ha \
	  --copyright "lay7.ha maintainers" --title "lay7.ha documentation" --dest-dir $(DOCS_DIR)/site lay7.ha >/dev/null
	$(DOCS_BIN)/pip install -qq --no-index -r $(DOCS_DIR)/site/requirements.txt
	$(BIN)/python tools/docs_site.py prepare $(DOCS_DIR)/site
	cd $(DOCS_DIR)/site && PATH=$(DOCS_BIN):$$PATH ./build.sh >build.log 2>&1 || { cat build.log; exit 1; }
	mv $(DOCS_DIR)/site/build/html $(DOCS_DIR)/html
	$(BIN)/python tools/docs_site.py check $(DOCS_DIR)/html
	@echo "docs: $(CURDIR)/$(DOCS_DIR)/html/index.html"

# Both on every core (pytest-xdist): the tests share no state but temporary directories
# and free loopback ports, and most of their time is spent in separate processes (HAProxy,
# ansible-playbook).
unit: $(UNIT_CORES)

$(UNIT_CORES): unit-%: build/core-%/.stamp collection
	PATH=$(CURDIR)/build/core-$*/bin:$$PATH python -m pytest -q -n auto tests/unit

# In two parts. What measures no timing runs beside the lab's converge in make test, where there
# is room: the route tables' feature and conformance tests (their HAProxies run without health
# checks once up, or retry a case a late check's 503 hit), the role renders (ansible-playbook on
# this machine, haproxy -c; no HAProxy left running), the inventory, collection-build and
# execution-environment tests (ansible-builder create and introspect, no container), promtool's
# rule tests (their clock is simulated) and the regex-engine check. The rest, with the loopback
# HAProxies that check their servers every 100 ms and the bounds that follow from it, alone.
UNTIMED_TESTS := $(addprefix tests/integration/,test_route_features_loopback.py test_httproute_conformance.py \
	test_haproxy_role_render.py test_haproxy_role_render_routes.py test_haproxy_tls_render.py \
	test_topology_vars.py test_scenario_inventories.py test_collection_build.py \
	test_execution_environment.py test_prometheus_rules.py test_regex_pcre2.py)

integration: integration-timed integration-untimed

integration-timed: venv collection deps prometheus
	pytest -q -n auto tests/integration $(addprefix --ignore=,$(UNTIMED_TESTS))

integration-untimed: venv collection deps builder-tools prometheus
	pytest -q -n auto $(UNTIMED_TESTS)

build: venv
	rm -rf build/dist && mkdir -p build/dist
	ansible-galaxy collection build --force --output-path build/dist .

# ansible-test sanity on exactly what ships, on each core of the matrix: the tarball that core's
# ansible-galaxy builds, extracted under build/sanity/<core>/ansible_collections/lay7/ha as its own
# git repository (ansible-test lists files with git). Each core's ansible-test runs from its
# build/core-<core> with a HOME of its own under SANITY_CACHE, outside the clone: the per-test
# venvs ansible-test makes there (named by a hash of their requirements, so never stale) take
# minutes to install, which a fresh clone would otherwise pay on every core. They are seeded
# with pip from PyPI through tests/sanity/pip_bootstrap.py, because the usual bootstrap script host
# (ci-files.testing.ansible.com) is not reachable. The script is cached under the pip version the
# core's ansible-test bootstraps (get_venv_packages in ansible_test/_internal/python_requirements.py):
# change SANITY_PIP_<core> with the core's pin. tests/ is not in the tarball: ansible-test's
# tests/config.yml is copied in, and tests/sanity/ignore-<core>.txt should a core need one.
SANITY_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/lay7-ha/ansible-test
SANITY_PIP_2.16 := 23.1.2
SANITY_PIP_2.19 := 24.2
sanity: $(SANITY_CORES)

$(SANITY_CORES): sanity-%: build/core-%/.stamp
	rm -rf build/sanity/$* && mkdir -p build/sanity/$*/dist build/sanity/$*/ansible_collections/lay7/ha $(SANITY_CACHE)/$*/.ansible/test/cache
	build/core-$*/bin/ansible-galaxy collection build --force --output-path build/sanity/$*/dist .
	tar -xzf build/sanity/$*/dist/lay7-ha-*.tar.gz -C build/sanity/$*/ansible_collections/lay7/ha
	mkdir -p build/sanity/$*/ansible_collections/lay7/ha/tests/sanity && cp tests/config.yml build/sanity/$*/ansible_collections/lay7/ha/tests/
	if [ -f tests/sanity/ignore-$*.txt ]; then cp tests/sanity/ignore-$*.txt build/sanity/$*/ansible_collections/lay7/ha/tests/sanity/; fi
	cd build/sanity/$*/ansible_collections/lay7/ha && git init -q . && git add -A
	ls $(SANITY_CACHE)/$*/.ansible/test/cache/pip-$(SANITY_PIP_$*)-*.whl >/dev/null 2>&1 || build/core-$*/bin/pip download -q --no-deps -d $(SANITY_CACHE)/$*/.ansible/test/cache pip==$(SANITY_PIP_$*)
	cp tests/sanity/pip_bootstrap.py $(SANITY_CACHE)/$*/.ansible/test/cache/get_pip_$(subst .,_,$(SANITY_PIP_$*)).py
	cd build/sanity/$*/ansible_collections/lay7/ha && HOME=$(SANITY_CACHE)/$* PATH=$(CURDIR)/build/core-$*/bin:$$PATH ansible-test sanity --local --python 3.11 --requirements

lab-tests: venv collection deps
	pytest -q tests/lab

# The Debian release(s) the lab's hosts boot in the Molecule scenario (lab/topology.yml
# image.suites; `make demo` and the lab tool's tests boot the default, bookworm). `mixed` gives
# each group's hosts bookworm and trixie in turn (hap1, web1 and web3 Debian 12; hap2 and web2
# Debian 13), so one converge and one verify run every role on both tested releases and the VRRP
# pair spans them (docs/platforms.md). test-debian12 / test-debian13: one release everywhere.
LAB_RELEASE ?= mixed

# The core verification (every feature on the real hosts; see LAY7_VERIFY in
# molecule/shared/tests/conftest.py) ...
molecule-lab: venv collection deps browser scan-tools prometheus
	LAY7_LAB_RELEASE=$(LAB_RELEASE) LAY7_VERIFY=core molecule test -s lab

# The same on a lab whose five hosts all run one release (not in make test: its budget).
test-debian12 test-debian13:
	$(MAKE) --no-print-directory molecule-lab LAB_RELEASE=$(if $(findstring 12,$@),bookworm,trixie)

# ... and all of it: the core plus the extended fault, change and HTTPS scenarios (about
# twice as long; not in `make test`).
test-extended: venv collection deps browser scan-tools prometheus
	LAY7_LAB_RELEASE=$(LAB_RELEASE) LAY7_VERIFY=all molecule test -s lab

# Not part of `make test` (too slow for every change): the Vagrant scenario with the
# libvirt provider and a locally built box; installs what it needs (docs/vagrant.md).
test-vagrant: venv collection deps browser scan-tools prometheus
	vagrant/test.sh

# Not part of `make test` either: the root Vagrantfile as its users run it (vagrant up with the
# local box, its Ansible provisioner running site.yml), the routing checks through the VIP from
# this machine, vagrant destroy, nothing left behind; times in build/vagrant-e2e.json (docs/vagrant.md).
.PHONY: vagrant-e2e
vagrant-e2e: venv collection deps
	vagrant/e2e.sh

# `make test` is `molecule test -s lab` plus every check without hosts, ordered to fit its
# 25-minute budget on two cores: first what measures timing on this machine alone (the lab
# tool's tests, the loopback HAProxy's 100 ms health checks in integration-timed); then lint,
# docs-lint, unit, sanity and integration-untimed, which measure nothing, side by side with the lab
# scenario's create, converge and idempotence; then verify alone (its bounds are timings), then
# destroy. A failure in the middle step still destroys the lab.
test: lab-tests integration-timed
	$(MAKE) --no-print-directory -j2 --output-sync=target lab-converged checks || { molecule destroy -s lab >/dev/null 2>&1 || true; exit 1; }
	$(MAKE) --no-print-directory lab-verified

checks: lint docs-lint unit sanity integration-untimed

# molecule test -s lab in two halves (the same steps in the same order).
lab-converged: venv collection deps browser scan-tools prometheus
	molecule destroy -s lab
	molecule syntax -s lab
	LAY7_LAB_RELEASE=$(LAB_RELEASE) molecule create -s lab
	molecule converge -s lab
	molecule idempotence -s lab

lab-verified: venv collection prometheus
	LAY7_LAB_RELEASE=$(LAB_RELEASE) LAY7_VERIFY=core molecule verify -s lab || { molecule destroy -s lab; exit 1; }
	molecule destroy -s lab

demo: venv collection deps
	$(BIN)/python -m lab.demo

bench: venv collection deps
	$(BIN)/pip install -q -r bench/requirements.txt
	mkdir -p bench/results
	for f in bench/bench_*.py; do $(BIN)/python "$$f"; done

clean:
	rm -rf build .collections .pytest_cache

# The tool virtualenvs kept across clones (tools/cached_venv.sh) and ansible-test's (SANITY_CACHE).
.PHONY: clean-cache
clean-cache:
	rm -rf $(or $(LAY7_TOOL_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/lay7-ha/venvs) $(SANITY_CACHE)
