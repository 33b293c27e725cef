#!/usr/bin/env bash
# What each part of a sandboxed process start costs on this machine (SECURITY.md,
# BENCHMARKS.md "The function sandbox"): it runs /bin/true behind each part alone
# and behind bubblewrap's view with one part left out at a time, the way nimbus started
# instances as root before it set the sandbox up itself, plus the system calls nimbus's
# forked child now makes (the same view: a mount namespace, ~12 mounts, pivot_root, the
# uid switch) in a small C program, which stands for the child between fork and exec
# (plus the program's own exec, which nimbus's child does not pay).
#
#   bench/sandbox-parts.sh          (as root; needs bwrap, setpriv, cc, python3)
#
# Knobs: RUNS (rounds, default 200). Prints a table: median, p10, p90 ms and the median
# over /bin/true.
set -euo pipefail
RUNS=${RUNS:-200}
D=$(mktemp -d /tmp/nimbus-sandbox-parts.XXXXXX)
trap 'rm -rf "$D"' EXIT
APP=$D/app
mkdir -p "$APP/.nimbus/runtime" "$D/etc" "$D/root"
echo 'exports.handler = async () => 1;' > "$APP/handler.js"
for f in ld.so.cache ld.so.conf ld.so.conf.d ssl ca-certificates ca-certificates.conf resolv.conf \
  hosts host.conf nsswitch.conf gai.conf services protocols passwd group alternatives; do
  [ -e "/etc/$f" ] && cp -a "/etc/$f" "$D/etc/"
done
[ -L /etc/localtime ] && ln -s "$(readlink /etc/localtime)" "$D/etc/localtime"

view() { # the instance's bubblewrap view as nimbus built it, without the part named in $1
  local a=(--die-with-parent)
  [ "$1" != ipc ] && a+=(--unshare-ipc)
  [ "$1" != uts ] && a+=(--unshare-uts)
  [ "$1" != cgroupns ] && a+=(--unshare-cgroup-try)
  [ "$1" != proc ] && a+=(--ro-bind /proc /proc)
  [ "$1" != dev ] && a+=(--dev /dev --dev-bind /dev/null /dev/tty)
  a+=(--ro-bind /usr /usr)
  for l in bin sbin lib lib64; do [ -L "/$l" ] && a+=(--symlink "$(readlink "/$l")" "/$l"); done
  [ "$1" != etc ] && a+=(--ro-bind "$D/etc" /etc)
  [ "$1" != tmp ] && a+=(--perms 1777 --size 536870912 --tmpfs /tmp)
  a+=(--perms 0755 --dir "$D" --perms 0755 --dir "$APP")
  [ "$1" != app ] && a+=(--ro-bind "$APP/handler.js" "$APP/handler.js" --perms 0755 --dir "$APP/.nimbus"
    --ro-bind "$APP/.nimbus/runtime" "$APP/.nimbus/runtime")
  a+=(--chdir "$APP" --)
  echo "${a[*]}"
}
SETPRIV="setpriv --reuid=265000 --regid=265000 --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all --"

cat > "$D/child.c" <<'C'
// The sandbox's system calls as nimbus's forked child makes them (sandbox/setup.rs).
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#define D(x) do { if ((x) < 0) { perror(#x); _exit(127); } } while (0)
static char R[512];
static void at(char *out, const char *rel) { snprintf(out, 512, "%s%s", R, rel); }
static void ro(const char *dst) {
  unsigned long long attr[4] = { 1 | 2 | 4, 0, 0, 0 };  /* RDONLY|NOSUID|NODEV */
  D(syscall(SYS_mount_setattr, AT_FDCWD, dst, 0x8000, attr, sizeof attr));
}
static void bind(const char *src, const char *rel, int file) {
  char dst[512]; at(dst, rel);
  if (file) close(open(dst, O_CREAT | O_WRONLY, 0444)); else mkdir(dst, 0755);
  D(mount(src, dst, NULL, MS_BIND | MS_REC, NULL)); ro(dst);
}
static void dir(const char *rel) { char d[512]; at(d, rel); mkdir(d, 0755); }
int main(int argc, char **argv) {
  snprintf(R, sizeof R, "%s", argv[1]);
  const char *app = argv[2], *etc = argv[3];
  char p[512], q[512];
  umask(0);
  D(unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)); unshare(CLONE_NEWCGROUP);
  D(mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL));
  D(mount("tmpfs", R, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
  bind("/proc", "/proc", 0);
  dir("/dev"); at(p, "/dev"); D(mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
  const char *devs[] = { "null", "zero", "full", "random", "urandom", "tty" };
  for (int i = 0; i < 6; i++) {
    snprintf(q, 512, "/dev/%s", devs[i]); at(p, q); close(open(p, O_CREAT | O_WRONLY, 0444));
    D(mount(i == 5 ? "/dev/null" : q, p, NULL, MS_BIND, NULL));
  }
  dir("/dev/pts"); at(p, "/dev/pts");
  D(mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620"));
  bind("/usr", "/usr", 0);
  at(p, "/bin"); symlink("usr/bin", p); at(p, "/lib"); symlink("usr/lib", p);
  at(p, "/lib64"); symlink("usr/lib64", p);
  bind(etc, "/etc", 0);
  dir("/tmp"); at(p, "/tmp");
  D(mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=536870912"));
  for (char *s = strchr(app + 1, '/'); ; s = strchr(s + 1, '/')) {  /* the app folder's chain */
    char part[512]; snprintf(part, 512, "%.*s", s ? (int)(s - app) : (int)strlen(app), app); dir(part);
    if (!s) break;
  }
  snprintf(q, 512, "%s/handler.js", app); bind(q, q, 1);
  snprintf(q, 512, "%s/.nimbus", app); dir(q);
  snprintf(q, 512, "%s/.nimbus/runtime", app); bind(q, q, 0);
  { unsigned long long attr[4] = { 1 | 2 | 4, 0, 0, 0 };
    D(syscall(SYS_mount_setattr, AT_FDCWD, R, 0, attr, sizeof attr)); }
  D(chdir(R)); D(syscall(SYS_pivot_root, ".", ".")); D(umount2(".", MNT_DETACH)); D(chdir(app));
  for (unsigned long c = 0; c < 64; c++) prctl(PR_CAPBSET_DROP, c, 0UL, 0UL, 0UL);
  D(setgroups(0, NULL)); D(setresgid(265000, 265000, 265000)); D(setresuid(265000, 265000, 265000));
  D(prctl(PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL));
  D(prctl(PR_SET_PDEATHSIG, 9UL, 0UL, 0UL, 0UL));
  execv(argv[4], argv + 4); perror("exec"); return 127;
}
C
cc -O2 -o "$D/child" "$D/child.c"
"$D/child" "$D/root" "$APP" "$D/etc" /bin/sh -c 'test "$(id -u)" = 265000 && test -f handler.js && ! test -w /usr' \
  || { echo "the C child's view is not as expected" >&2; exit 1; }

names=(true "bwrap view + setpriv (before)" "bwrap view" "setpriv alone")
cmds=(/bin/true "bwrap $(view none) $SETPRIV /bin/true" "bwrap $(view none) /bin/true" "$SETPRIV /bin/true")
for part in ipc uts cgroupns proc dev etc tmp app; do
  names+=("bwrap view without $part"); cmds+=("bwrap $(view "$part") /bin/true")
done
names+=("bwrap --bind / / (namespace, no view)" "unshare -m (util-linux)" "the child's system calls (now), as a program")
cmds+=("bwrap --bind / / /bin/true" "unshare -m /bin/true" "$D/child $D/root $APP $D/etc /bin/true")

echo "# $(uname -r), $(bwrap --version), load average $(cut -d' ' -f1-3 /proc/loadavg), $RUNS rounds"
# Interleaved: each round runs every command once, in turn, so a change in the machine's
# load (other builds) shifts all of them alike; hyperfine would run each in one block.
python3 - "$RUNS" "${names[@]}" -- "${cmds[@]}" <<'PY'
import os, shlex, statistics, sys, time
runs = int(sys.argv[1])
split = sys.argv.index("--")
names, cmds = sys.argv[2:split], [shlex.split(c) for c in sys.argv[split + 1:]]
env = {"PATH": "/usr/bin:/bin"}
times = [[] for _ in cmds]
for round_idx in range(runs + 5):
    for idx, argv in enumerate(cmds):
        t0 = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, env)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            sys.exit(f"{names[idx]}: exit status {status}")
        if round_idx >= 5:  # warm-up rounds
            times[idx].append((time.perf_counter() - t0) * 1000)
base = statistics.median(times[0])
print("| /bin/true behind | median ms | p10 ms | p90 ms | median over /bin/true |")
print("|---|---|---|---|---|")
for name, ts in zip(names, times):
    q = statistics.quantiles(ts, n=10)
    print(f"| {name} | {statistics.median(ts):.2f} | {q[0]:.2f} | {q[-1]:.2f} | {statistics.median(ts) - base:+.2f} |")
PY
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
