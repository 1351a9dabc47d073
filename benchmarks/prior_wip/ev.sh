#!/bin/bash
# ev.sh WEIGHTS OUT: test en/zh R@10, test-hard en, paraphrases
W=$1; O=$2; D=/work/runs/data10; mkdir -p $O; cd /work/main
for s in test.en test.zh test-hard.en val.en; do
  python -m crossmodal eval retrieval -m native:@$W --language ${s##*.} --no-progress --data $D/eval/$s.retrieval.jsonl --out $O/$s > $O/$s.txt 2>&1
  echo "$s $(grep 'text->image' $O/$s.txt)"
done
python -m crossmodal eval queries -m native:@$W -q benchmarks/queries/paraphrases.jsonl -d $D/images/openmoji -o $O/para --no-progress > $O/para.txt 2>&1
grep -i "success" $O/para.txt | head -5
