#!/usr/bin/env bash
# The layers of src/ (docs/architecture.md): each may include only its own headers and those of the layers
# below it. Fails listing every include that runs the other way.
#
#   check_layers.sh SOURCE_DIR
set -euo pipefail
cd "$1/src"
declare -A below=(
  [base]=""
  [codec]="base"
  [wire]="base codec"
  [client]="base codec wire"
  [container]="base codec wire client"
  [server]="base codec wire"
  [agent]="base codec wire server"
  [runtime]="base codec wire client container server"
  [cli]="base codec wire client server agent runtime"
)
problems=0
for layer in "${!below[@]}"; do
  [ -d "$layer" ] || continue
  for file in "$layer"/*.cpp "$layer"/*.hpp; do
    [ -e "$file" ] || continue
    while read -r included; do
      target=${included%%/*}
      [ "$target" = "$layer" ] && continue
      case " ${below[$layer]} " in *" $target "*) continue ;; esac
      echo "$file includes \"$included\": $layer may include only ${below[$layer]:-nothing else}" >&2
      problems=$((problems + 1))
    done < <(sed -n 's/^#include "\([a-z_]*\/[^"]*\)".*/\1/p' "$file")
  done
done
for dir in */; do
  [ -n "${below[${dir%/}]+set}" ] || { echo "src/$dir is in no layer: add it to check_layers.sh and docs/architecture.md" >&2; problems=$((problems + 1)); }
done
exit $((problems > 0))
