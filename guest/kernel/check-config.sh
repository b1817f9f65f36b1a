#!/usr/bin/env bash
# Checks that every option of a kconfig fragment survived into a final .config:
#   check-config.sh <fragment> <.config>
# "CONFIG_X=v" must be in .config exactly; "# CONFIG_X is not set" must not be set there (not set,
# or absent: not even visible). Other lines (comments, blanks) are ignored. Names each option that
# did not survive on stderr and exits 1; exits 0 when all did.
set -euo pipefail
export LC_ALL=C

[ $# -eq 2 ] || {
  echo "usage: check-config.sh <fragment> <.config>" >&2
  exit 2
}
fragment=$1
config=$2
[ -f "$fragment" ] || {
  echo "check-config: fragment $fragment does not exist" >&2
  exit 2
}
[ -f "$config" ] || {
  echo "check-config: config $config does not exist" >&2
  exit 2
}

# The value an option has in .config: "CONFIG_X=v", "# CONFIG_X is not set", or "absent".
got() { grep -E "^(# )?$1[= ]" "$config" | head -n1 || echo absent; }

lost=0
while IFS= read -r line || [ -n "$line" ]; do
  if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    name=${BASH_REMATCH[1]}
    if ! grep -qxF -- "$line" "$config"; then
      echo "check-config: $name did not survive: wanted ${BASH_REMATCH[2]}, got $(got "$name")" >&2
      lost=$((lost + 1))
    fi
  elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    name=${BASH_REMATCH[1]}
    if grep -qE "^$name=" "$config"; then
      echo "check-config: $name did not survive: wanted not set, got $(got "$name")" >&2
      lost=$((lost + 1))
    fi
  fi
done <"$fragment"
if [ "$lost" -gt 0 ]; then
  echo "check-config: $lost option(s) of $fragment are not in $config" >&2
  exit 1
fi
