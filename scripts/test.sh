#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (a C toolchain for
# librdkafka, the Kafka broker, Chromium and chromedriver for the console), starts the broker,
# runs the tests, stops the broker.
#
# The tests' broker is its own: Tansu on 127.0.0.1:19092 with data under
# ~/.cache/vigil/kafka-test, reset at every run (a broker you run on 9092 is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install the Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >/dev/null
  fi
fi

# The web console's browser tests drive Debian's headless Chromium through chromedriver.
if ! command -v chromedriver >/dev/null 2>&1 || ! { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; }; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver (the console's browser tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium and chromedriver are needed by the console's browser tests; install them (or set VIGIL_SKIP_BROWSER_TESTS=1)" >&2
    exit 1
  fi
fi

# The labelled benchmark data (NAB, C-MAPSS) the backtest tests read: $VIGIL_DATASETS, else
# ../shared/datasets beside the repository; nowhere else. Without them those tests say they are
# skipped — except under CI (CI=true, as .ci/run sets it), where a missing data set fails the run.
if [ -z "${VIGIL_DATASETS:-}" ] && [ -d ../shared/datasets ]; then
  export VIGIL_DATASETS="$(cd ../shared/datasets && pwd)"
fi
if [ -z "${VIGIL_DATASETS:-}" ] || [ ! -d "$VIGIL_DATASETS" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "CI=true and the data sets are missing (set VIGIL_DATASETS, or put them at ../shared/datasets)" >&2
    exit 1
  fi
  echo "note: no data sets at ${VIGIL_DATASETS:-../shared/datasets}: the backtest tests that read them are skipped" >&2
fi

# An independent reader of the Delta tables: Python's deltalake (delta-rs), whose counts the
# tests compare with Vigil's own SQL.
if ! python3 -c "import deltalake, pyarrow" >/dev/null 2>&1; then
  if ! command -v python3 >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
  fi
  echo "installing Python's deltalake and pyarrow (the independent Delta reader of the tests)"
  python3 -m pip install --quiet deltalake pyarrow 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages deltalake pyarrow
fi

export VIGIL_KAFKA_LISTEN="${VIGIL_KAFKA_LISTEN:-127.0.0.1:19092}"
export VIGIL_KAFKA_DIR="${VIGIL_KAFKA_DIR:-$HOME/.cache/vigil/kafka-test}"
export VIGIL_TEST_BROKERS="$VIGIL_KAFKA_LISTEN"
scripts/kafka.sh install
scripts/kafka.sh reset
scripts/kafka.sh start
trap 'scripts/kafka.sh stop' EXIT

cargo test --workspace --all-targets "$@"
