# drmesh — the two commands a newcomer needs are `make dev` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
CLUSTER := tests/e2e/cluster/cluster.sh
E2E_ENV = DRMESH_KUBECONFIG="$$($(CLUSTER) kubeconfig)" DRMESH_KUBECTL="$$($(CLUSTER) bin)/kubectl"

.PHONY: all build image release test unit e2e flux bench bench-ci bench-memory chaos dev dev-down run control-plane cluster-up cluster-down kubeconfig crds lint

all: build

build: ## Build the drmesh binary
	$(CARGO) build --locked

# The operator's OCI image: debug for the tests (built anyway), release for `make image`.
IMAGE_PROFILE ?= release
TARGET_DIR = $${CARGO_TARGET_DIR:-target}

image: ## The operator's OCI image archive, reproducible, without Docker or a registry (prints its path)
	@$(CARGO) build --locked --bin drmesh $(if $(filter release,$(IMAGE_PROFILE)),--release) >&2
	@images/build.sh operator "$(TARGET_DIR)/$(IMAGE_PROFILE)/drmesh"

release: ## dist/: operator OCI image, chart pinned to it, static CLI archive, SBOM, krew manifest, SHA256SUMS (DRMESH_IMAGE_REPOSITORY)
	@hack/release.sh

test: lint unit e2e bench-ci ## All tests: formatting and clippy, unit, end-to-end on the local control plane, then the CI bench

unit: ## Unit and offline tests of every crate of the workspace (no cluster needed)
	$(CARGO) test --locked --workspace

# The end-to-end tests run with the real node (data path); `make cluster-up` alone stays kwok-only.
e2e: export DRMESH_REAL_NODE ?= 1
e2e: cluster-up build flux ## End-to-end tests against the real local control plane and node, with the operator running
	$(E2E_ENV) tests/e2e/with-operator.sh $(CARGO) test --locked --features e2e --test e2e -- --skip packaging::
	@# The packaging tests run operators of their own (as the chart's identity): not beside the shared one.
	$(E2E_ENV) $(CARGO) test --locked --features e2e --test e2e -- packaging::

bench: cluster-up ## Benchmarks on the local control plane (DRMESH_BENCH_PRODUCTS, DRMESH_BENCH_IDLE_SECS; about 1 h 20 min at 1,000)
	$(E2E_ENV) $(CARGO) bench --locked --bench mesh

bench-ci: cluster-up build ## The CI bench: 100 products; asserts 0 idle writes, <= 2 reconciles per change, 0 judge violations (no timing)
	@# Built with the dev profile, like the e2e tests: no release build in CI.
	$(E2E_ENV) DRMESH_BENCH_CI=1 $(CARGO) bench --locked --profile dev --bench mesh

bench-memory: ## Bytes per cached child (reflector store against compact records), per Event kept (kube Recorder against drmesh), the mesh index (no cluster; DRMESH_BENCH_PRODUCTS)
	$(CARGO) bench --locked --bench memory

chaos: cluster-up ## Faults during convergence, with an invariant checker (DRMESH_CHAOS_PRODUCTS, DRMESH_CHAOS_KILLS, DRMESH_CHAOS_PHASES, DRMESH_CHAOS_JUDGE_PAUSE_MS)
	$(E2E_ENV) $(CARGO) bench --locked --bench chaos

chart-lint: ## helm lint --strict and helm template of charts/drmesh (helm built from Go modules)
	@helm="$$($(CLUSTER) bin)/helm"; \
	"$$helm" lint --strict charts/drmesh; \
	"$$helm" template drmesh charts/drmesh -n drmesh-system --include-crds > /dev/null && echo "charts/drmesh renders"

packaging: cluster-up build flux ## Only the packaging e2e tests: chart, operator RBAC, admission policies, GitOps health and Flux delivery, audit
	$(E2E_ENV) $(CARGO) test --locked --features e2e --test e2e -- packaging::

dev: ## Local cluster + drmesh + the reference mesh, shown converging
	@hack/dev.sh

dev-down: ## Stop the operator started by make dev
	@if [[ -f .drmesh/dev/operator.pid ]]; then kill "$$(cat .drmesh/dev/operator.pid)" 2>/dev/null || true; rm -f .drmesh/dev/operator.pid; fi

run: build ## The operator in the foreground, against the current kubeconfig
	target/debug/drmesh run

control-plane: ## Build (or reuse cached) etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok
	@tests/e2e/cluster/build.sh

flux: ## Build (or reuse cached) Flux's source-controller, kustomize-controller and git test server (the GitOps e2e test)
	@tests/e2e/cluster/build.sh flux >/dev/null

cluster-up: ## Start the local control plane (builds it first if needed); DRMESH_REAL_NODE=1 adds a real node
	@$(CLUSTER) up

cluster-down: dev-down ## Stop the local control plane (and a make dev operator); safe to run twice
	@$(CLUSTER) down

kubeconfig: ## Print the local cluster's kubeconfig path (use with make -s)
	@$(CLUSTER) kubeconfig

crds: ## Regenerate the CRD YAML from the Rust types
	$(CARGO) run -q --locked -- crds > crds/drmesh.io_crds.yaml
	cp crds/drmesh.io_crds.yaml charts/drmesh/crds/drmesh.io_crds.yaml

lint: ## Formatting and clippy
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets --features e2e -- -D warnings
	@# The core alone: Cargo unifies kube's features across a workspace build, so only a
	@# build of drmesh-core by itself proves it cannot reach a Kubernetes client.
	$(CARGO) check --locked -p drmesh-core --all-targets
