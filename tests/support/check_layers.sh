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
  [runtime]="base codec wire client container server"
  [cli]="base codec wire client server runtime"
)
# Known, and next to go (docs/architecture.md says how): container mode reads the App's functions and the
# current call from the runtime, and hands the runtime its connection.
allowed_upward="container/container_runtime.hpp:runtime/app_state.hpp
container/container_runtime.cpp:runtime/current.hpp
container/container_runtime.cpp:runtime/process_client.hpp
container/stack_trace.cpp:runtime/current.hpp
container/input_executor.hpp:runtime/current.hpp
container/output_capture.hpp:runtime/current.hpp"
problems=0
for layer in "${!below[@]}"; do
  [ -d "$layer" ] || continue
  for file in "$layer"/*.cpp "$layer"/*.hpp; do
    [ -e "$file" ] || continue
    while read -r included; do
      target=${included%%/*}
      [ "$target" = "$layer" ] && continue
      case " ${below[$layer]} " in *" $target "*) continue ;; esac
      grep -qxF "$file:$included" <<<"$allowed_upward" && continue
      echo "$file includes \"$included\": $layer may include only ${below[$layer]:-nothing else}" >&2
      problems=$((problems + 1))
    done < <(sed -n 's/^#include "\([a-z_]*\/[^"]*\)".*/\1/p' "$file")
  done
done
for dir in */; do
  [ -n "${below[${dir%/}]+set}" ] || { echo "src/$dir is in no layer: add it to check_layers.sh and docs/architecture.md" >&2; problems=$((problems + 1)); }
done
exit $((problems > 0))
