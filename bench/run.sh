#!/usr/bin/env bash
# run.sh measures memshuffle against memguard, the Go heap and the floors
# (bench/compare_test.go), runs the core module's own benchmarks
# (bench_test.go at the root) and the memory footprint tool
# (bench/cmd/footprint), summarizes with benchstat, and writes
# BENCHMARKS.md at the repository root and bench/rentreturn.svg with
# bench/cmd/report. Every figure in them is parsed from this run's output.
#
# Run it from the repository root or from bench/:
#
#   bench/run.sh              # COUNT=10 samples of every benchmark
#   COUNT=3 bench/run.sh      # quicker
#   QUICK=1 bench/run.sh      # only what the tables read, 6 samples (under 15 minutes)
#
# Settings (environment variables):
#
#   QUICK              1: COUNT=6 (the fewest that give a 95% interval) at
#                      BENCHTIME=0.5s, the comparison at 32 B, 64 KiB and 1 MiB
#                      only, of the core module only the benchmarks the
#                      report's tables read, footprint at 1,000,000 only
#   COUNT              samples of each benchmark (10; 6 with QUICK=1)
#   BENCHTIME          -benchtime of the ordinary benchmarks (1s; 0.5s with QUICK=1)
#   HEAVY              top-level core benchmarks that take seconds per iteration and
#                      gigabytes of memory (^Benchmark(Shuffle|RotateKey|Memory)$)
#   HEAVY_BENCHTIME    their -benchtime (3x)
#   PAUSE              top-level core benchmarks that measure latency under a
#                      background job (^BenchmarkRentReturnDuring(BackgroundShuffle|KeyRotation)$)
#   PAUSE_BENCHTIME    their -benchtime, the length of each run (3s)
#   PAUSE_SETTLE       seconds to wait before each of them (10): the heavy
#                      benchmarks just before free gigabytes, and for some
#                      seconds after that the hypervisor takes the CPUs away
#                      now and then (steal time) to take the freed pages back,
#                      which puts milliseconds into a latency maximum (see
#                      bench/NOTES.md)
#   CACHE_ROUNDS       rounds of `memshuffle cache` with and without -baseline (6)
#   CACHE_ARGS         its workload (-tokens 100000 -goroutines 8 -duration 3s)
#   FOOTPRINT_COUNTS   numbers of live secrets the footprint tool holds (10000,1000000;
#                      1000000 with QUICK=1)
#   FOOTPRINT_TIMEOUT  limit for each footprint child process (5m; 1m with QUICK=1)
#
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench_dir/.." && pwd)
cd "$root"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	COUNT=${COUNT:-6}
	BENCHTIME=${BENCHTIME:-0.5s}
	FOOTPRINT_COUNTS=${FOOTPRINT_COUNTS:-1000000}
	FOOTPRINT_TIMEOUT=${FOOTPRINT_TIMEOUT:-1m}
fi
COUNT=${COUNT:-10}
BENCHTIME=${BENCHTIME:-1s}
HEAVY=${HEAVY:-'^Benchmark(Shuffle|RotateKey|Memory)$'}
HEAVY_BENCHTIME=${HEAVY_BENCHTIME:-3x}
PAUSE=${PAUSE:-'^BenchmarkRentReturnDuring(BackgroundShuffle|KeyRotation)$'}
PAUSE_BENCHTIME=${PAUSE_BENCHTIME:-3s}
PAUSE_SETTLE=${PAUSE_SETTLE:-10}
CACHE_ROUNDS=${CACHE_ROUNDS:-6}
CACHE_ARGS=${CACHE_ARGS:-'-tokens 100000 -goroutines 8 -duration 3s'}
FOOTPRINT_COUNTS=${FOOTPRINT_COUNTS:-10000,1000000}
FOOTPRINT_TIMEOUT=${FOOTPRINT_TIMEOUT:-5m}

results=bench/results
rm -rf "$results"
mkdir -p "$results"
commands=$results/commands.txt
failures=$results/failures.txt
env_file=$results/env.txt
: >"$commands"
start=$(date +%s)

# quote prints its arguments as a shell command line: plain words as they
# are, anything else in single quotes.
quote() {
	local out="" a
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then
			out+=" $a"
		else
			out+=" '${a//\'/\'\\\'\'}'"
		fi
	done
	printf '%s' "${out# }"
}

# log appends a command to commands.txt: $1 is an indent, $2 a redirection
# to show after it (or ""), the rest the command.
log() {
	local indent=$1 redirect=$2
	shift 2
	printf '%s%s%s\n' "$indent" "$(quote "$@")" "${redirect:+ $redirect}" >>"$commands"
}

# run logs a command and runs it.
run() {
	log "" "" "$@"
	"$@"
}

# bench runs one benchmark binary, appending its results to a file, and
# records a failure instead of stopping the run: a benchmark that breaks
# (others change the core library while this runs) leaves its figures
# missing from the report, which says so.
bench() {
	local round=$1 out=$2
	shift 2
	if [[ $round == 1 ]]; then
		log "  " ">>$out" "$@"
	fi
	echo "run.sh: round $round/$COUNT: $(quote "$@")" >&2
	local rc=0
	"$@" >>"$out" 2>>"$results/stderr.log" || rc=$?
	if ((rc != 0)); then
		echo "round $round: $(quote "$@") exited with status $rc (output in $out, $results/stderr.log)" >>"$failures"
		echo "run.sh: FAILED (status $rc), continuing" >&2
	fi
}

# --- the machine and the code measured -------------------------------------
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "cores: $(nproc) logical CPUs ($(grep -c '^processor' /proc/cpuinfo) in /proc/cpuinfo, $(grep -m1 '^cpu cores' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') cores per socket)"
	echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "go: $(go version)"
	echo "kernel: $(uname -sr)"
	echo "RLIMIT_MEMLOCK: $(ulimit -l) KiB; vm.max_map_count: $(cat /proc/sys/vm/max_map_count); uid: $(id -u)"
	commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
	# grep finds nothing in a clean tree; that is not an error here.
	changed=$(git --no-optional-locks status --porcelain 2>/dev/null | { grep -v ' bench/\| BENCHMARKS.md$' || true; } | awk '{ print $2 }' | tr '\n' ' ' | sed 's/ $//')
	if [[ -n $changed ]]; then
		echo "code measured: commit $commit with uncommitted changes in: $changed"
	else
		echo "code measured: commit $commit"
	fi
	mode="every benchmark"
	if [[ $QUICK == 1 ]]; then
		mode="QUICK=1: only the benchmarks the report's tables read"
	fi
	echo "samples: $COUNT of each benchmark (COUNT=$COUNT, $mode), taken in interleaved rounds; -benchtime $BENCHTIME, $HEAVY_BENCHTIME for $HEAVY, $PAUSE_BENCHTIME for $PAUSE, each after $PAUSE_SETTLE s of rest; $CACHE_ROUNDS rounds of the cache workload"
	echo "uptime at the start: $(uptime)"
} >"$env_file"
cat "$env_file" >&2

# --- build everything once ---------------------------------------------------
# bench/go.mod replaces the core module with ../, so it must list whatever
# the core module requires; when the core adds a requirement, tidy it here
# rather than fail to build.
if ! go -C bench mod tidy -diff >/dev/null 2>&1; then
	echo "run.sh: bench/go.mod is behind the root module's requirements; running go mod tidy in bench/ (commit the change)" >&2
	run go -C bench mod tidy
fi
run go test -c -o "$results/core.test" .
run go -C bench test -c -o results/compare.test .
run go build -o "$results/memshuffle" ./cmd/memshuffle
run go -C bench build -o results/footprint ./cmd/footprint
run go -C bench build -o results/report ./cmd/report
run go -C bench build -o results/benchstat golang.org/x/perf/cmd/benchstat

# Each group of core benchmarks is one -test.bench pattern with its own
# -benchtime: the heavy ones (seconds per iteration) a few iterations, the
# pause ones a fixed time, everything else the default. QUICK=1 runs only
# what the report's tables read.
core_pat=() core_bt=() core_settle=()
group() { core_pat+=("$1"); core_bt+=("$2"); core_settle+=("${3:-0}"); }
cmp_pat=.
if [[ $QUICK == 1 ]]; then
	cmp_pat='^BenchmarkRentReturn$/./^size=(32|65536|1048576)$'
	group '^BenchmarkRentReturn$/^size=(32|65536|1048576)$' "$BENCHTIME"
	group '^BenchmarkRentReturnLive$/^live=(10|1000|1000000)$' "$BENCHTIME"
	group '^BenchmarkAlloc$/^size=32$' "$BENCHTIME"
	group '^BenchmarkRentReturnParallel$/^entries=own$' "$BENCHTIME"
	group '^BenchmarkRentReturnParallelPaired$' "$BENCHTIME"
	group '^BenchmarkBaselineCTR$/^size=(65536|1048576)$' "$BENCHTIME"
	group '^Benchmark(BaselineGCM|BaselineAESCTR|BaselinePermuteCopy|BaselinePermuteCopyFixed|BaselineCopyClear)$' "$BENCHTIME"
	group '^BenchmarkRentReturnPaired$/^size=32$' "$BENCHTIME"
	group '^BenchmarkRentReturnPairedCTR$/^size=(65536|1048576)$' "$BENCHTIME"
	group '^BenchmarkShufflePaired$/^entries=1000000$' "$BENCHTIME"
	group '^Benchmark(Shuffle|Memory)$' "$HEAVY_BENCHTIME"
	group '^BenchmarkRentReturnDuringBackgroundShuffle$/^total=256MiB$' "$PAUSE_BENCHTIME" "$PAUSE_SETTLE"
	group '^BenchmarkRentReturnDuringKeyRotation$/^total=256MiB$/^size=32$/^shards=8$' "$PAUSE_BENCHTIME" "$PAUSE_SETTLE"
else
	mapfile -t all < <("$results/core.test" -test.list '^Benchmark' | grep '^Benchmark')
	light=() heavy=() pause=()
	for b in "${all[@]}"; do
		if [[ $b =~ $HEAVY ]]; then
			heavy+=("$b")
		elif [[ $b =~ $PAUSE ]]; then
			pause+=("$b")
		else
			light+=("$b")
		fi
	done
	join() { local IFS='|'; echo "^($*)\$"; }
	if ((${#light[@]})); then group "$(join "${light[@]}")" "$BENCHTIME"; fi
	if ((${#heavy[@]})); then group "$(join "${heavy[@]}")" "$HEAVY_BENCHTIME"; fi
	if ((${#pause[@]})); then group "$(join "${pause[@]}")" "$PAUSE_BENCHTIME" "$PAUSE_SETTLE"; fi
fi

# cache runs the token cache workload once on memshuffle and once on the
# map behind a sync.RWMutex, in an order that alternates with the round so
# that neither always runs first; the report reads their summary lines.
cache() {
	local round=$1 order=("" -baseline) a
	if ((round % 2 == 0)); then order=(-baseline ""); fi
	for a in "${order[@]}"; do
		# CACHE_ARGS is a list of words on purpose.
		# shellcheck disable=SC2086
		bench "$round" "$results/cache.txt" "$results/memshuffle" cache $CACHE_ARGS -quiet ${a:+"$a"}
	done
}

# --- benchmarks, in interleaved rounds ---------------------------------------
loads=()
echo "for round in \$(seq $COUNT); do" >>"$commands"
for round in $(seq "$COUNT"); do
	# The machine may be shared: record how busy it is as each round starts.
	loads+=("$(cut -d' ' -f1 /proc/loadavg)")
	bench "$round" "$results/compare.txt" "$results/compare.test" -test.run '^$' -test.bench "$cmp_pat" \
		-test.benchtime "$BENCHTIME" -test.count 1 -test.timeout 60m
	for i in "${!core_pat[@]}"; do
		if ((core_settle[i] > 0)); then
			if ((round == 1)); then log "  " "" sleep "${core_settle[i]}"; fi
			sleep "${core_settle[i]}"
		fi
		bench "$round" "$results/core.txt" "$results/core.test" -test.run '^$' -test.bench "${core_pat[i]}" \
			-test.benchtime "${core_bt[i]}" -test.count 1 -test.timeout 60m
	done
	if ((round <= CACHE_ROUNDS)); then
		if ((round == 1)); then echo "  # in rounds 1 to $((CACHE_ROUNDS < COUNT ? CACHE_ROUNDS : COUNT)) only, -baseline first in even rounds:" >>"$commands"; fi
		cache "$round"
	fi
done
echo "done" >>"$commands"

# --- memory footprint ---------------------------------------------------------
log "" ">$results/footprint.txt" "$results/footprint" -counts "$FOOTPRINT_COUNTS" -timeout "$FOOTPRINT_TIMEOUT" -json "$results/footprint.json"
if ! "$results/footprint" -counts "$FOOTPRINT_COUNTS" -timeout "$FOOTPRINT_TIMEOUT" \
	-json "$results/footprint.json" >"$results/footprint.txt"; then
	echo "footprint tool failed (see its output above)" >>"$failures"
fi
cat "$results/footprint.txt" >&2

# --- summaries and the report --------------------------------------------------
# B/s only restates sec/op, and seven libraries make wide tables already.
log "" ">$results/compare.benchstat.txt" "$results/benchstat" -filter -.unit:B/s -col /lib "$results/compare.txt"
"$results/benchstat" -filter -.unit:B/s -col /lib "$results/compare.txt" >"$results/compare.benchstat.txt"
log "" ">$results/core.benchstat.txt" "$results/benchstat" "$results/core.txt"
"$results/benchstat" "$results/core.txt" >"$results/core.benchstat.txt"

elapsed=$(($(date +%s) - start))
echo "load average (1 min) as each round started: ${loads[*]}; at the end: $(cut -d' ' -f1 /proc/loadavg) ($(nproc) CPUs)" >>"$env_file"
echo "uptime at the end: $(uptime)" >>"$env_file"
echo "duration: $((elapsed / 60)) min $((elapsed % 60)) s for the whole run (builds, benchmark rounds, footprint)" >>"$env_file"
run "$results/report" -results "$results" -out BENCHMARKS.md -svg bench/rentreturn.svg -notes bench/NOTES.md

echo "run.sh: wrote BENCHMARKS.md and bench/rentreturn.svg in $((elapsed / 60)) min $((elapsed % 60)) s" >&2
sed -n '/^## Targets/,/^## Notes/p' BENCHMARKS.md | sed '$d' >&2
if [[ -s $failures ]]; then
	echo "run.sh: some steps failed:" >&2
	cat "$failures" >&2
	exit 1
fi
