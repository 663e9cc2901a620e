# `sam build` runs `make build-<LogicalId>` once per function (`BuildMethod:
# makefile` in template.yaml), in this directory when building in source
# (`build_in_source = true` in samconfig.toml). Every target runs the same
# cargo-lambda build of every function package: the first one compiles
# the workspace, the others find it up to date and only copy their
# `bootstrap` into `$(ARTIFACTS_DIR)`.
#
# SAM does not tell make the architecture. It writes every function's
# resolved architecture (the `Architecture` parameter, with
# `--parameter-overrides`) to build.toml next to its build directory before
# it runs the targets; that is read here. `ARCH=x86_64|arm64` overrides it.

PACKAGES := $(notdir $(wildcard functions/*))
BUILD_TOML = $(ARTIFACTS_DIR)/../../build.toml

# The architecture of function $(1) in SAM's build.toml, if it is there.
sam_arch = $(shell awk -v id='"$(1)"' ' \
	/^\[/ { if (hit && arch != "") exit; arch = ""; hit = 0 } \
	/^architecture *=/ { arch = $$3; gsub(/"/, "", arch) } \
	/^functions *=/ && index($$0, id) { hit = 1 } \
	END { if (hit && arch != "") print arch }' '$(BUILD_TOML)' 2>/dev/null)

# CreateUpload -> create-upload, the rule tests/tests/template.rs checks.
binary = $(shell echo '$(1)' | sed -E 's/([a-z0-9])([A-Z])/\1-\2/g' | tr '[:upper:]' '[:lower:]')

build-%:
	$(eval arch := $(or $(ARCH),$(call sam_arch,$*),arm64))
	$(eval bin := $(call binary,$*))
	@case '$(arch)' in arm64|x86_64) ;; *) echo "unknown architecture '$(arch)' for $*" >&2; exit 1 ;; esac
	@test -d 'functions/$(bin)' || { echo "no package functions/$(bin) for $*" >&2; exit 1; }
	cargo lambda build --release --locked $(if $(filter arm64,$(arch)),--arm64,--x86-64) \
		--lambda-dir target/lambda $(addprefix -p ,$(PACKAGES))
	mkdir -p '$(ARTIFACTS_DIR)'
	cp 'target/lambda/$(bin)/bootstrap' '$(ARTIFACTS_DIR)/bootstrap'
