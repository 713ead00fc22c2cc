# The two commands a new user needs: `make up` and `make test`. Both install what is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
PACKAGES := libs/contracts libs/kit libs/devstack \
	services/inventory services/promotion services/customer services/payment services/order services/dispatcher \
	gateway
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))

.PHONY: install up test lint fmt gen openapi client unit bench soak soak-customers clean-state

$(STAMP): requirements-dev.txt $(PYPROJECTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing Omnitill and its tools into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt \
		$(addprefix -e ,$(PACKAGES))
	@touch $(STAMP)

# The OpenAPI contract tools (Redocly, Spectral, optic, openapi-typescript), pinned in
# tools/contract/package-lock.json; only where Node.js is installed (their tests skip without).
NODE_TOOLS := tools/contract/node_modules/.install-stamp
$(NODE_TOOLS): tools/contract/package.json tools/contract/package-lock.json
	@if command -v node >/dev/null 2>&1; then \
		echo "==> installing the OpenAPI contract tools into tools/contract/node_modules"; \
		cd tools/contract && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
			&& touch node_modules/.install-stamp; \
	else \
		echo "==> no Node.js: the OpenAPI contract tools are not installed, their tests skip"; \
	fi

install: $(STAMP) $(NODE_TOOLS)

# Start the whole platform on this machine. FRESH=1 starts from empty data.
up: install
	@$(PY) -m pos_devstack up $(if $(FRESH),--fresh,)

# Every check and every test, exactly what CI runs. The tests wait on servers more than they
# compute, so they run in TEST_WORKERS processes (pytest-xdist), each with servers and a
# platform of its own, a test file's tests together in one; TEST_WORKERS=0 runs them in this one.
TEST_WORKERS ?= 2
test: install lint
	@$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy -p pos_kit -p pos_devstack -p pos_inventory -p pos_promotion -p pos_customer \
		-p pos_payment -p pos_order -p pos_dispatcher -p pos_gateway
	@cd proto && ../$(VENV)/bin/buf lint && ../$(VENV)/bin/buf format --diff --exit-code

fmt: install
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .
	@cd proto && ../$(VENV)/bin/buf format -w

# Regenerate the protobuf/gRPC Python code from proto/ (a test fails when it drifts).
gen: install
	@$(PY) tools/gen_protos.py

# Accept an intended change of the public API into the committed OpenAPI snapshot.
openapi: install
	@$(PY) tools/openapi_snapshot.py

# The TypeScript types of the API (tools/contract/client/schema.d.ts) from the snapshot.
client: install
	@cd tools/contract && npm run --silent generate

# Only the tests that need no server: domain code, the kit's pure parts, the manifests.
unit: install
	@$(PY) -m pytest -q -m "not server and not e2e"

# Register checkouts through the gateway with wrk at 8 and 16 connections, then the single-hop
# ceiling (CEILING, the bench-ceiling folder) in the same run and the ratio. Needs wrk; takes a
# few minutes; not part of `make test` or CI: its figures depend on the machine.
CEILING ?= ../shared/bench-ceiling
# The customer service at the size its issue names: 1,000,000 customers of one merchant (the
# last 100,000 imported over gRPC, the rest loaded in bulk), searched and credited
# (tools/bench_customers.py; about 11 minutes, 4.5 of them the accrual; not run by CI).
soak-customers: install
	@$(PY) tools/bench_customers.py --customers 1000000 --queries 1000 --orders 10000

# Register sales under random SIGKILLs of the order, payment and inventory services and the
# gateway (tools/soak_checkout.py; prints its counts, exits 1 on a charge without a sale).
soak: install
	@$(PY) tools/soak_checkout.py --seconds 300

bench: install
	@$(PY) tools/bench_checkout.py $(if $(wildcard $(CEILING)/run_e2e.sh),--ceiling $(CEILING),)

clean-state:
	rm -rf .omnitill
