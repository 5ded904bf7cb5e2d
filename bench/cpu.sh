# Shared by the bench scripts (sourced): CPU accounting.

# CPU seconds (user + system) used so far by the process $SERVER (walletql)
# and by all of PostgreSQL (reaped backends included, through the
# postmaster's children times).
cpu_seconds() {
  python3 - "$SERVER" <<'PY'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
def ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    except OSError:
        return 0
pg = 0
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if open(f"/proc/{pid}/comm").read().strip() == "postgres":
                pg += ticks(pid)
        except OSError:
            pass
print(ticks(sys.argv[1]) / hz, pg / hz)
PY
}
