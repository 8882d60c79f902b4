#!/usr/bin/env bash
# The round trip against real PyTorch/peft (issue 12): train LoRA and HoRA briefly, export them as
# peft folders and as a merged checkpoint, and have peft (pinned, in its own venv) load them and
# match the Rust logits on real tweets to 1e-5; then peft saves LoRAs that `hora predict` loads
# and must match; then (issue 25) 20-step LoRA and HoRA training trajectories are replayed in
# PyTorch and must match step by step. Exits non-zero on any mismatch or warning. Offline once the venv
# is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)

venv=${PEFT_VENV:-.venv-peft}
reference=crates/finetune/tests/reference
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reference/requirements.txt"
echo "peft check: venv ready after $(($(date +%s) - start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
assets=${HORA_ASSETS:-$PWD/assets}
model="$assets/all-MiniLM-L6-v2"
hora() { cargo run --quiet -p lab --bin hora -- --assets "$assets" --results "$work/results" "$@"; }

hora --experiments .ci/peft run peft-check
raw="$work/results/peft-check/raw"
adapter_of() { dirname "$(grep -l "\"method\": \"$1\"" "$raw"/*.adapter/hora_adapter.json)"; }
lora=$(adapter_of lora)
hora_native=$(adapter_of hora)
hora export "$(basename "$lora" .adapter)" --to peft "$work/lora-peft"
hora export "$(basename "$hora_native" .adapter)" --to peft "$work/hora-peft"
hora export "$lora" --to merged "$work/lora-merged"

# 64 real tweets from across the file (read lossily, as training reads them).
"$venv/bin/python" - "$assets/tweets.csv" > "$work/tweets.txt" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8", errors="replace")))
for r in rows[:: len(rows) // 64][:64]:
    print(" ".join(r["text"].split()))
PY
hora predict "$work/lora-peft" < "$work/tweets.txt" > "$work/rust-lora.tsv"
hora predict "$work/hora-peft" < "$work/tweets.txt" > "$work/rust-hora.tsv"
hora predict "$work/lora-peft" --merged < "$work/tweets.txt" > "$work/rust-lora-merged.tsv"

"$venv/bin/python" "$reference/peft_round_trip.py" exports --model-dir "$model" \
  --texts "$work/tweets.txt" --lora "$work/lora-peft" --hora "$work/hora-peft" \
  --hora-native "$hora_native" --lora-merged "$work/lora-merged" \
  --rust-lora "$work/rust-lora.tsv" --rust-hora "$work/rust-hora.tsv" \
  --rust-lora-merged "$work/rust-lora-merged.tsv" --write-peft "$work/from-peft"

pairs=()
for saved in bert-model seq-cls; do
  hora predict "$work/from-peft/$saved" < "$work/tweets.txt" > "$work/rust-$saved.tsv"
  pairs+=("$work/from-peft/$saved/expected.tsv" "$work/rust-$saved.tsv")
done
"$venv/bin/python" "$reference/peft_round_trip.py" compare "${pairs[@]}"

# (d) Training itself (issue 25): 20 AdamW steps of LoRA, then of HoRA, on fixed batches of real
# tweets, every dropout off, in Rust; PyTorch (peft for LoRA, hora_torch.py for HoRA) with torch's
# AdamW from the same initial adapter and head on the same batches must give the same loss at
# every step and the same final adapter.
for method in lora hora; do
  METHOD=$method HORA_ASSETS="$assets" cargo run --quiet -p finetune --example trajectory -- "$work/trajectory-$method" > /dev/null
  "$venv/bin/python" "$reference/peft_round_trip.py" trajectory --model-dir "$model" --dir "$work/trajectory-$method"
done
echo "peft check passed in $(($(date +%s) - start)) s"
