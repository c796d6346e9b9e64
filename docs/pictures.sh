#!/usr/bin/env bash
# The README's pictures, from a real run of this checkout: `digits tutorial` on the built-in
# data (the real MNIST as a Kaggle folder), its report's PNGs copied into docs/images/.
#   make pictures      (or: DIGITS=path/to/digits DATA=folder bash docs/pictures.sh)
set -eu
DIGITS=${DIGITS:-.venv/bin/digits}
DATA=${DATA:-data}
run="$(mktemp -d)/tutorial"
"$DIGITS" tutorial --data "$DATA" --out "$run" --quiet
mkdir -p docs/images
for name in curves mistakes confusion per-class samples; do
  cp "$run/report/$name.png" "docs/images/tutorial-$name.png"
done
echo "pictures from $run: $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['score'])" "$run/score.json")"
