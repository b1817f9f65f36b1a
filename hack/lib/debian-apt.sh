# shellcheck shell=bash
# This host's apt configuration, for roots made from Debian packages (hack/fresh-check.sh,
# hack/image.sh). Sourced, not run.

# host_mirror SUITE: the URI of this host's apt source for SUITE (deb822 .sources or one-line .list)
host_mirror() {
  local suite=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$suite" '
      /^$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
      END { if (uri != "" && ok) print uri }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$suite" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i + 1) == suite) print $i; break } }' "$f"
  done
}

# apt_config_files: what a root gets of this host's apt configuration: its sources, and its
# Acquire settings (a proxy, Check-Valid-Until for a snapshot mirror).
apt_config_files() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] && echo "$f"
  done
  for f in /etc/apt/apt.conf.d/*; do
    [ -f "$f" ] && grep -q '^[[:space:]]*Acquire' "$f" && echo "$f"
  done
  return 0
}
