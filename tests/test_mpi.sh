#!/usr/bin/env bash
# Data-parallel training under mpirun, with the real binaries: 2 ranks x batch
# 6 follow the loss curve of 1 process x batch 12 (and its evals), on a corpus
# and on a task; rank 0
# alone writes the run, recording the global batch; an MPI run's checkpoint
# resumes in one process and a one-process checkpoint under 2 ranks; ranks
# with differing weights fail the checksum check (tests/mpi_agree.c); a bad
# config is reported once with exit 2; a rank killed with -9 ends the job
# within seconds with a non-zero status and a loadable checkpoint. Skipped
# when the build has no MPI or mpirun is missing.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$QK_SOURCE/tests/lib.sh"

if ! command -v mpirun > /dev/null; then
    echo "SKIP: no mpirun (apt-get install openmpi-bin)"
    exit 77
fi
if [[ $(ldd "$build/train") != *libmpi* ]]; then
    echo "SKIP: train was built without MPI (meson -Dmpi=enabled needs libopenmpi-dev)"
    exit 77
fi
export OMP_NUM_THREADS=1
# Under scripts/sanitize: Open MPI never frees some of its own allocations
# (and its plugins are unloaded at exit, so they cannot be suppressed by
# name); LeakSanitizer would report them in every rank. Address and UB
# checks stay on here, and leaks are checked on every path of the other tests.
[[ -n ${ASAN_OPTIONS:-} ]] && export ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0
# as root Open MPI wants both the flag and nothing else; a 2-core machine
# running other tests needs --oversubscribe
mpi=(mpirun --allow-run-as-root --oversubscribe -np)

# The tolerance: the two runs differ only in the order of the gradient sum
# (rank 0's rows + rank 1's rows vs all rows at once) and in float rounding of
# the per-rank mean losses; measured about 4e-8 relative over 30 steps.
tol=1e-5
# close A B COLUMNS: every row of CSV files A and B has equal step and the
# given columns equal within the relative tolerance
close() {
    awk -F, -v tol="$tol" -v cols="$3" '
        NR == FNR { a[FNR] = $0; next }
        FNR > 1 {
            split(a[FNR], x, ","); n = split(cols, c, " ")
            if (x[1] != $1) { print "row " FNR ": step " x[1] " vs " $1; bad = 1; exit }
            for (i = 1; i <= n; i++) {
                d = x[c[i]] - $c[i]; d = d < 0 ? -d : d
                m = $c[i] < 0 ? -$c[i] : $c[i]
                if (d > tol * m) { print "row " FNR " column " c[i] ": " x[c[i]] " vs " $c[i]; bad = 1 }
                if (d / (m > 0 ? m : 1) > worst) worst = d / (m > 0 ? m : 1)
            }
        }
        END { if (FNR != length(a) && !bad) { print "row counts differ"; bad = 1 }
              printf "max relative difference %g\n", worst > "/dev/stderr"; exit bad }' "$1" "$2" \
        || fail "$1 vs $2: columns $3 differ beyond $tol"
}

write_corpus corpus.txt 300 'line %d: a cat sat on mat %d; dogs ran %d laps.\n' 7 5
write_config m.ini run.seed=5 train.batch_size=6 train.steps=30 train.eval_every=10 \
    log.checkpoint_every=10 log.heatmap_every=10

# 2 ranks x 6 against 1 process x 12: loss, grad_norm, clip_scale; evals.
"${mpi[@]}" 2 "$build/train" m.ini run.name=two > two.out 2> two.err || fail "2 ranks: $(cat two.err)"
"$build/train" m.ini run.name=one train.batch_size=12 > /dev/null
grep -q "2 ranks x batch 6 = global batch 12" two.out || fail "no rank line: $(cat two.out)"
[ "$(grep -c "eval: train loss" two.out)" = 4 ] || fail "console lines from more than rank 0"
close runs/two/metrics.csv runs/one/metrics.csv "2 3 4 5"
close runs/two/eval.csv runs/one/eval.csv "2 3"
[ "$(wc -l < runs/two/qk.csv)" = "$(wc -l < runs/one/qk.csv)" ] || fail "qk.csv rows"
close runs/two/qk.csv runs/one/qk.csv "4 5 6 7"
grep -q "^batch_size = 12$" runs/two/config.ini || fail "config.ini should record the global batch 12"
[ -f runs/two/attn/filmstrip_L0.png ] && [ -f runs/two/index.html ] || fail "rank 0's pictures and report"

# A task whose records score different numbers of targets per rank (repeat):
# each rank divides by the global count, so the curves are still the run of 12.
cat > t.ini <<'INI'
[run]
seed = 5
[data]
task = repeat
[task]
letters = 6
len_min = 2
len_max = 7
[model]
n_layer = 2
n_head = 2
n_embd = 16
block_size = 15
[train]
batch_size = 6
steps = 20
warmup_steps = 5
eval_every = 10
eval_batches = 2
[log]
heatmap_every = 10
INI
"${mpi[@]}" 2 "$build/train" t.ini run.name=ttwo > /dev/null 2> ttwo.err || fail "2 ranks, task: $(cat ttwo.err)"
"$build/train" t.ini run.name=tone train.batch_size=12 > /dev/null
close runs/ttwo/metrics.csv runs/tone/metrics.csv "2 3 4 5"
close runs/ttwo/eval.csv runs/tone/eval.csv "2 3 4 5"

# An MPI checkpoint (step 20) resumed in one process with the global batch,
# and a one-process checkpoint resumed by 2 ranks: both end as the run of 12.
"${mpi[@]}" 2 "$build/train" m.ini run.name=stop train.stop_after=20 > /dev/null 2> stop.err \
    || fail "2 ranks, stop_after: $(cat stop.err)"
"$build/qkscope-info" runs/stop/ckpt/latest.safetensors | grep -q "step  *20 of 30" \
    || fail "MPI checkpoint: $("$build/qkscope-info" runs/stop/ckpt/latest.safetensors)"
"$build/train" m.ini run.name=stop train.batch_size=12 run.resume=true > /dev/null
close runs/stop/metrics.csv runs/one/metrics.csv "2 3 4 5"
close runs/stop/eval.csv runs/one/eval.csv "2 3"
"$build/train" m.ini run.name=single train.batch_size=12 train.stop_after=20 > /dev/null
"${mpi[@]}" 2 "$build/train" m.ini run.name=single run.resume=true > /dev/null 2> single.err \
    || fail "2 ranks resuming: $(cat single.err)"
close runs/single/metrics.csv runs/one/metrics.csv "2 3 4 5"

# Ranks whose weights differ in one bit: the checksum check fails on each.
"${mpi[@]}" 2 "$QK_BUILD/tests/mpi_agree" > agree.out 2>&1 || fail "weight agreement check: $(cat agree.out)"

# A bad config: every rank refuses it, the job says it once and exits 2.
expect_exit 2 "n_embd (16) is not divisible by n_head (3)" "${mpi[@]}" 2 "$build/train" m.ini model.n_head=3
[ "$(grep -c "not divisible" err.txt)" = 1 ] || fail "message not printed once: $(cat err.txt)"
expect_exit 2 "already holds a run" "${mpi[@]}" 2 "$build/train" m.ini run.name=two
[ "$(grep -c "already holds a run" err.txt)" = 1 ] || fail "message not printed once: $(cat err.txt)"

# kill -9 of rank 1 mid-run: mpirun takes the job down within seconds, with a
# non-zero status and a message from rank 0; the newest checkpoint loads.
"${mpi[@]}" 2 "$build/train" m.ini run.name=kill train.steps=1000000 model.n_embd=32 \
    log.checkpoint_every=20 log.heatmap_every=0 train.eval_every=1000 > kill.out 2> kill.err &
mpirun_pid=$!
# should the test fail with the job running, its ranks go too (lib.sh's trap
# kills mpirun alone)
trap '{ pkill -9 -P "$mpirun_pid"; kill -9 "$mpirun_pid"; } 2> /dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 1 600); do
    [ -e runs/kill/ckpt/latest.safetensors ] && break
    sleep 0.05
done
[ -e runs/kill/ckpt/latest.safetensors ] || fail "the killed run wrote no checkpoint: $(cat kill.err)"
victim=
for p in $(pgrep -P "$mpirun_pid"); do
    tr '\0' '\n' < "/proc/$p/environ" | grep -qx OMPI_COMM_WORLD_RANK=1 && victim=$p
done
[ -n "$victim" ] || fail "rank 1 not found among mpirun's children"
kill -9 "$victim"
start=$SECONDS
for _ in $(seq 1 200); do
    kill -0 "$mpirun_pid" 2> /dev/null || break
    sleep 0.05
done
kill -0 "$mpirun_pid" 2> /dev/null && fail "the job still runs 10 s after rank 1 was killed"
set +e
wait "$mpirun_pid"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "killed rank: mpirun exited 0"
grep -q "rank 0 of 2: stopped by a signal" kill.err || fail "no message from rank 0: $(cat kill.err)"
"$build/qkscope-info" runs/kill/ckpt/latest.safetensors > info.txt \
    || fail "latest checkpoint after the kill does not load: $(cat info.txt)"
echo "killed rank: job ended after $((SECONDS - start)) s with status $rc"
