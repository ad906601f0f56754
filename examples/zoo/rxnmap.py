"""chython-rxnmap: a trained graph transformer for atom-to-atom mapping of chemical reactions (ONNX).

Weights: the `chython-rxnmap` wheel (2.0) ships one file, `chython_rxnmap/rxnmap.onnx` (85 MB,
opset 17, exported from PyTorch 2.7; 21.1M parameters): the semisupervised reaction encoder of
Nugmanov et al., J. Chem. Inf. Model. 2022 (doi:10.1021/acs.jcim.2c00344), trained on USPTO and
Pistachio. There is no torch definition in the wheel (chytorch is not used any more by chython),
so the source model is the ONNX file itself.

ONNX signature (batch fixed to 1, sequence length dynamic):
    atoms      int64 (1, L)     token per position: 0 padding, 1 molecule CLS, 2 + atomic number
                                (the reaction CLS is 0 too)
    neighbors  int64 (1, L)     2 + number of neighbours including implicit hydrogens (capped at
                                14); 0 for CLS tokens and padding
    distances  int64 (1, L, L)  within a molecule: 2 + topological distance (capped at 10), 1
                                between a molecule's CLS and its atoms (and across disconnected
                                parts); 0 between molecules and for padding; 1 on the reaction
                                CLS's own diagonal
    roles      int64 (1, L)     1 reaction CLS, 0 molecule CLS (and padding), 2 reactant atom,
                                3 product atom
    -> attention float32 (L, L)  the last reaction layer's attention, averaged over heads
                                (no batch axis: the exporter squeezed it)
Layout: [reaction CLS, (molecule CLS, its atoms) for each reactant, then for each product],
reagents (the middle field of a reaction SMILES) are not encoded. This is chython's
`chython/algorithms/mapping/attention.py` (`_encode_reaction`, `_encode_molecule`, chython 2.x,
LGPLv3), reimplemented below on a minimal SMILES reader (chython is not installed): organic-subset
and bracket atoms, branches, ring closures, bond symbols, aromatic lowercase atoms; implicit
hydrogens from the default valences (aromatic c/n/b/p count one extra bond for their Kekulé
double bond, pyrrole-type n written [nH] or with three neighbours). Only the graph, the elements
and the hydrogen counts reach the model (no bond orders, charges or atom order).

Padding: every sample is padded to a fixed L (64, the longest reaction has 61 tokens; 32 for
small=True) with padding tokens: atoms, neighbors and roles 0, distances 0 except 1 on their own
diagonal (like the reaction CLS). Zero distances everywhere would give a padding token nothing to
attend to in the molecule layers (softmax over nothing: NaN, and the NaN reaches every output);
with the self-loop the attention between real tokens is exactly (max |difference| 0.0) what
the unpadded reaction gives, and real tokens give padding tokens 0 attention.

Inputs: 101 real, textbook reactions written as reaction SMILES below (esterifications, amide
couplings, Suzuki / Heck / Sonogashira / Stille / Buchwald-Hartwig couplings, Diels-Alder,
Grignard, Wittig, aldol, reductions, oxidations, protections and deprotections, heterocycle
syntheses...), in file order: evaluation = the first 64 (16 for small=True, among the 71 that fit in 32
tokens), calibration = the remaining 37 (the next 16). No labels.

Task metric "aam_agreement": chython's greedy mapping (`_greedy_mapping`: attention between
reactant and product atoms, symmetrised, restricted to equal elements, neighbours boosted by 1.75)
run on the artifact's attention and on the source's; the share of product atoms mapped to the
same reactant atom, averaged over reactions.
"""

from __future__ import annotations

import importlib.util
import re
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from ._common import ZooModel, missing

NAME = "rxnmap"
REQUIRES = ("onnxruntime", "chython_rxnmap")
INSTALL = "make install (the zoo dependency group and the weight wheels, Makefile ZOO_WEIGHTS)"

# (name, reaction SMILES: reactants>reagents>products); reagents are not encoded
REACTIONS: tuple[tuple[str, str], ...] = (
    ("Fischer esterification", "CC(=O)O.OCC>>CC(=O)OCC.O"),
    ("methyl benzoate", "OC(=O)c1ccccc1.CO>>COC(=O)c1ccccc1.O"),
    ("acetamide from acetyl chloride", "CC(=O)Cl.NCc1ccccc1>>CC(=O)NCc1ccccc1.Cl"),
    ("aspirin", "OC(=O)c1ccccc1O.CC(=O)OC(C)=O>>CC(=O)Oc1ccccc1C(=O)O.CC(=O)O"),
    ("paracetamol", "Nc1ccc(O)cc1.CC(=O)OC(C)=O>>CC(=O)Nc1ccc(O)cc1.CC(=O)O"),
    ("Suzuki: biphenyl", "Brc1ccccc1.OB(O)c1ccccc1>[Pd]>c1ccc(-c2ccccc2)cc1"),
    ("Suzuki: 4-methoxybiphenyl", "COc1ccc(Br)cc1.OB(O)c1ccccc1>[Pd]>COc1ccc(-c2ccccc2)cc1"),
    ("Suzuki: 3-arylpyridine", "Brc1cccnc1.OB(O)c1ccc(C)cc1>[Pd]>Cc1ccc(-c2cccnc2)cc1"),
    ("Diels-Alder: butadiene + ethylene", "C=CC=C.C=C>>C1=CCCCC1"),
    ("Diels-Alder: cyclopentadiene + maleic anhydride",
     "C1=CCC=C1.O=C1OC(=O)C=C1>>O=C1OC(=O)C2C3C=CC(C3)C12"),
    ("Diels-Alder: butadiene + methyl acrylate", "C=CC=C.C=CC(=O)OC>>COC(=O)C1CCC=CC1"),
    ("Williamson ether", "CCO.CCBr>>CCOCC.Br"),
    ("SN2 cyanide", "CCCCBr.[C-]#N>>CCCCC#N.[Br-]"),
    ("Grignard: acetone", "CC(C)=O.C[Mg]Br>>CC(C)(C)O"),
    ("Wittig", "O=Cc1ccccc1.C=P(c1ccccc1)(c1ccccc1)c1ccccc1>>C=Cc1ccccc1.O=P(c1ccccc1)(c1ccccc1)c1ccccc1"),
    ("Claisen-Schmidt condensation", "CC(C)=O.O=Cc1ccccc1>>CC(=O)C=Cc1ccccc1.O"),
    ("reductive amination", "O=C1CCCCC1.NCc1ccccc1>[BH3-]C#N.[Na+]>C(NC1CCCCC1)c1ccccc1"),
    ("nitration of benzene", "c1ccccc1.O=[N+]([O-])O>OS(=O)(=O)O>O=[N+]([O-])c1ccccc1.O"),
    ("bromination of toluene", "Cc1ccccc1.BrBr>[Fe]>Cc1ccc(Br)cc1.Br"),
    ("Friedel-Crafts acylation", "c1ccccc1.CC(=O)Cl>Cl[Al](Cl)Cl>CC(=O)c1ccccc1.Cl"),
    ("ketone reduction", "CC(=O)c1ccccc1>[BH4-].[Na+]>CC(O)c1ccccc1"),
    ("alkene hydrogenation", "C=Cc1ccccc1>[Pd]>CCc1ccccc1"),
    ("nitro reduction", "O=[N+]([O-])c1ccccc1>[Pd]>Nc1ccccc1"),
    ("Boc protection", "NCc1ccccc1.CC(C)(C)OC(=O)OC(=O)OC(C)(C)C>>CC(C)(C)OC(=O)NCc1ccccc1.CC(C)(C)O.O=C=O"),
    ("Boc deprotection", "CC(C)(C)OC(=O)NCc1ccccc1>OC(=O)C(F)(F)F>NCc1ccccc1.C=C(C)C.O=C=O"),
    ("saponification", "CCOC(=O)c1ccccc1.[OH-]>>O=C([O-])c1ccccc1.CCO"),
    ("amide coupling", "OC(=O)c1ccccc1.NCCc1ccccc1>>O=C(NCCc1ccccc1)c1ccccc1"),
    ("Sonogashira", "Ic1ccccc1.C#Cc1ccccc1>[Pd].[Cu]I>c1ccc(C#Cc2ccccc2)cc1"),
    ("Heck", "Ic1ccccc1.C=CC(=O)OC>[Pd]>COC(=O)/C=C/c1ccccc1"),
    ("Buchwald-Hartwig", "Brc1ccc(C)cc1.C1COCCN1>[Pd]>Cc1ccc(N2CCOCC2)cc1"),
    ("CuAAC click", "C#Cc1ccccc1.[N-]=[N+]=NCc1ccccc1>[Cu]>c1ccc(Cn2cc(-c3ccccc3)nn2)cc1"),
    ("mCPBA epoxidation", "C=CCCCC.O=C(OO)c1cccc(Cl)c1>>CCCCC1CO1.O=C(O)c1cccc(Cl)c1"),
    ("hydroboration-oxidation", "C=CCCCC>B.OO>OCCCCCC"),
    ("alcohol oxidation to aldehyde", "OCc1ccccc1>>O=Cc1ccccc1"),
    ("Jones oxidation", "CCCCO>>CCCC(=O)O"),
    ("acetal formation", "O=Cc1ccccc1.OCCO>>c1ccc(C2OCCO2)cc1.O"),
    ("imine formation", "O=Cc1ccccc1.Nc1ccccc1>>C(=Nc1ccccc1)c1ccccc1.O"),
    ("Beckmann rearrangement", "ON=C1CCCCC1>>O=C1CCCCCN1"),
    ("Claisen condensation", "CCOC(C)=O.CCOC(C)=O>>CCOC(=O)CC(C)=O.CCO"),
    ("Michael addition", "CC(=O)CC(=O)OCC.C=CC(C)=O>>CCOC(=O)C(CCC(C)=O)C(C)=O"),
    ("Mitsunobu", "CCC(C)O.OC(=O)c1ccccc1>>CCC(C)OC(=O)c1ccccc1"),
    ("sulfonamide", "Cc1ccc(S(=O)(=O)Cl)cc1.NCc1ccccc1>>Cc1ccc(S(=O)(=O)NCc2ccccc2)cc1.Cl"),
    ("tosylation", "CCO.Cc1ccc(S(=O)(=O)Cl)cc1>>CCOS(=O)(=O)c1ccc(C)cc1.Cl"),
    ("urea from isocyanate", "O=C=Nc1ccccc1.NCC>>CCNC(=O)Nc1ccccc1"),
    ("carbamate from isocyanate", "O=C=Nc1ccccc1.OCC>>CCOC(=O)Nc1ccccc1"),
    ("SNAr", "O=[N+]([O-])c1ccc(F)cc1.C1CCNCC1>>O=[N+]([O-])c1ccc(N2CCCCC2)cc1.F"),
    ("acid chloride with thionyl chloride", "OC(=O)c1ccccc1.O=S(Cl)Cl>>O=C(Cl)c1ccccc1.O=S=O.Cl"),
    ("nitrile hydration", "CC#N.O>>CC(N)=O"),
    ("amide reduction", "CC(=O)NCc1ccccc1>[Li+].[AlH4-]>CCNCc1ccccc1"),
    ("ester reduction", "CCOC(=O)c1ccccc1>[Li+].[AlH4-]>OCc1ccccc1.CCO"),
    ("phenol methylation", "Oc1ccccc1.CI>>COc1ccccc1.I"),
    ("Finkelstein", "CCCCCl.[I-]>>CCCCI.[Cl-]"),
    ("benzoin condensation", "O=Cc1ccccc1.O=Cc1ccccc1>[C-]#N>O=C(c1ccccc1)C(O)c1ccccc1"),
    ("Knoevenagel", "O=Cc1ccccc1.N#CCC#N>>N#CC(C#N)=Cc1ccccc1.O"),
    ("Paal-Knorr pyrrole", "CC(=O)CCC(C)=O.CN>>Cc1ccc(C)n1C.O.O"),
    ("Hantzsch thiazole", "CC(=O)CBr.NC(N)=S>>Cc1csc(N)n1.Br.O"),
    ("Biginelli", "O=Cc1ccccc1.CCOC(=O)CC(C)=O.NC(N)=O>>CCOC(=O)C1=C(C)NC(=O)NC1c1ccccc1.O.O"),
    ("sulfide oxidation", "CSc1ccccc1>>CS(=O)c1ccccc1"),
    ("Horner-Wadsworth-Emmons",
     "O=Cc1ccccc1.CCOP(=O)(CC(=O)OCC)OCC>>CCOC(=O)/C=C/c1ccccc1.CCOP(=O)(O)OCC"),
    ("dipeptide coupling", "CC(NC(=O)OC(C)(C)C)C(=O)O.NCC(=O)OC>>COC(=O)CNC(=O)C(C)NC(=O)OC(C)(C)C"),
    ("Stille", "Brc1ccccc1.C=C[Sn](CCCC)(CCCC)CCCC>[Pd]>C=Cc1ccccc1"),
    ("methyl salicylate", "OC(=O)c1ccccc1O.CO>>COC(=O)c1ccccc1O.O"),
    ("cyanohydrin", "CC(C)=O.C#N>>CC(C)(O)C#N"),
    ("Strecker", "CC=O.N.C#N>>CC(N)C#N.O"),
    ("alpha-bromination of acetophenone", "CC(=O)c1ccccc1.BrBr>>O=C(CBr)c1ccccc1.Br"),
    ("nitrile reduction", "N#Cc1ccccc1>>NCc1ccccc1"),
    ("alkyne hydration", "C#Cc1ccccc1.O>>CC(=O)c1ccccc1"),
    ("epoxide opening", "C1CO1.NCc1ccccc1>>OCCNCc1ccccc1"),
    ("isoamyl acetate", "CC(=O)O.CC(C)CCO>>CC(C)CCOC(C)=O.O"),
    ("transesterification", "COC(=O)C=C.OCCCC>>CCCCOC(=O)C=C.CO"),
    ("benzamide from ester", "COC(=O)c1ccccc1.N>>NC(=O)c1ccccc1.CO"),
    ("Suzuki: 2-phenylthiophene", "Brc1cccs1.OB(O)c1ccccc1>[Pd]>c1ccc(-c2cccs2)cc1"),
    ("Suzuki: 4-acetylbiphenyl", "CC(=O)c1ccc(Br)cc1.OB(O)c1ccccc1>[Pd]>CC(=O)c1ccc(-c2ccccc2)cc1"),
    ("Suzuki: fluorobiphenyl nitrile", "Brc1ccc(C#N)cc1.OB(O)c1ccc(F)cc1>[Pd]>N#Cc1ccc(-c2ccc(F)cc2)cc1"),
    ("Diels-Alder: furan + maleimide", "c1ccoc1.O=C1C=CC(=O)N1>>O=C1NC(=O)C2C3C=CC(O3)C12"),
    ("Diels-Alder: isoprene + methyl vinyl ketone", "C=CC(C)=C.C=CC(C)=O>>CC(=O)C1CCC(C)=CC1"),
    ("benzanilide", "O=C(Cl)c1ccccc1.Nc1ccccc1>>O=C(Nc1ccccc1)c1ccccc1.Cl"),
    ("Schotten-Baumann", "CC(=O)Cl.C1CCNCC1>>CC(=O)N1CCCCC1.Cl"),
    ("ester hydrolysis", "CC(=O)OCC.O>>CC(=O)O.OCC"),
    ("benzyl acetate", "OCc1ccccc1.CC(=O)OC(C)=O>>CC(=O)OCc1ccccc1.CC(=O)O"),
    ("TBS protection", "OCc1ccccc1.CC(C)(C)[Si](C)(C)Cl>>CC(C)(C)[Si](C)(C)OCc1ccccc1.Cl"),
    ("benzyl ether", "Oc1ccccc1.BrCc1ccccc1>>c1ccc(COc2ccccc2)cc1.Br"),
    ("mesylation", "OCCc1ccccc1.CS(=O)(=O)Cl>>CS(=O)(=O)OCCc1ccccc1.Cl"),
    ("azide substitution", "CS(=O)(=O)OCCc1ccccc1.[N-]=[N+]=[N-]>>[N-]=[N+]=NCCc1ccccc1.CS(=O)(=O)[O-]"),
    ("Staudinger reduction", "[N-]=[N+]=NCCc1ccccc1>>NCCc1ccccc1"),
    ("oxime formation", "O=C1CCCCC1.NO>>ON=C1CCCCC1.O"),
    ("Wolff-Kishner", "CC(=O)c1ccccc1>NN>CCc1ccccc1"),
    ("Baeyer-Villiger", "O=C1CCCCC1.OO>>O=C1CCCCCO1.O"),
    ("Grignard carboxylation", "Brc1ccccc1.O=C=O>[Mg]>OC(=O)c1ccccc1"),
    ("Grignard: benzaldehyde", "CC[Mg]Br.O=Cc1ccccc1>>CCC(O)c1ccccc1"),
    ("disulfide", "SCc1ccccc1.SCc1ccccc1>>c1ccc(CSSCc2ccccc2)cc1"),
    ("alkyl chloride with thionyl chloride", "OCCCC.O=S(Cl)Cl>>ClCCCC.O=S=O.Cl"),
    ("alkene bromination", "C=CC.BrBr>>CC(Br)CBr"),
    ("Markovnikov HBr addition", "C=Cc1ccccc1.Br>>CC(Br)c1ccccc1"),
    ("acetal hydrolysis", "COC(OC)c1ccccc1.O>>O=Cc1ccccc1.CO.CO"),
    ("lactonization", "OCCCC(=O)O>>O=C1CCCO1.O"),
    ("lactam formation", "NCCCC(=O)O>>O=C1CCCN1.O"),
    ("alcohol dehydration", "CC(O)C>>C=CC.O"),
    ("Knorr pyrazole", "CC(=O)CC(C)=O.NN>>Cc1cc(C)[nH]n1.O.O"),
    ("N-methylation", "NCc1ccccc1.CI>>CNCc1ccccc1.I"),
    ("sulfonation of benzene", "c1ccccc1.O=S(=O)(O)O>>O=S(=O)(O)c1ccccc1.O"),
)

# ---- a minimal SMILES reader: the molecular graph, elements and hydrogen counts ----
_ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy "
    "Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn"
).split()
_Z = {e: i for i, e in enumerate(_ELEMENTS, 1)}
_VALENCES = {"B": (3,), "C": (4,), "N": (3, 5), "O": (2,), "P": (3, 5), "S": (2, 4, 6), "F": (1,),
             "Cl": (1,), "Br": (1,), "I": (1,)}
_TOKEN = re.compile(r"\[[^\]]+\]|Br|Cl|[BCNOPSFI]|[bcnops]|[-=#$:/\\]|[().]|%\d\d|\d")
_BRACKET = re.compile(r"\[(\d+)?([A-Z][a-z]?|[bcnops]|se|as)(@*)(?:H(\d*))?([+-]+\d*)?(?::\d+)?\]")
_BOND = {"-": 1, "/": 1, "\\": 1, "=": 2, "#": 3, "$": 4, ":": 0}


class Molecule:
    """Atoms (atomic numbers), hydrogen counts and the adjacency lists of one SMILES component."""

    def __init__(self) -> None:
        self.z: list[int] = []
        self.hydrogens: list[int] = []
        self.adj: list[list[int]] = []

    def __len__(self) -> int:
        return len(self.z)


def parse_smiles(smiles: str) -> list[Molecule]:
    """The dot-separated components of `smiles` as Molecules (no stereo, no explicit [H] atoms)."""
    if "".join(_TOKEN.findall(smiles)) != smiles:
        raise ValueError(f"unsupported SMILES: {smiles!r}")
    mols: list[Molecule] = []
    for part in smiles.split("."):
        atoms: list[tuple[str, bool, int | None]] = []  # element, aromatic, bracket H count
        bonds: list[tuple[int, int, int]] = []
        prev, bond, stack, rings = -1, None, [], {}
        for tok in _TOKEN.findall(part):
            if tok in _BOND:
                bond = tok
            elif tok == "(":
                stack.append(prev)
            elif tok == ")":
                prev = stack.pop()
            elif tok[0].isdigit() or tok[0] == "%":
                if tok in rings:
                    j, b0 = rings.pop(tok)
                    bonds.append((j, prev, _order(bond or b0, atoms[j], atoms[prev])))
                else:
                    rings[tok] = (prev, bond)
                bond = None
            else:
                if tok[0] == "[":
                    m = _BRACKET.fullmatch(tok)
                    if m is None:
                        raise ValueError(f"unsupported atom {tok!r} in {smiles!r}")
                    el, h = m.group(2), int(m.group(4) or 1) if m.group(4) is not None else 0
                    atoms.append((el.capitalize(), el.islower(), h))
                else:
                    atoms.append((tok.capitalize(), tok.islower(), None))
                if prev >= 0:
                    bonds.append((prev, len(atoms) - 1, _order(bond, atoms[prev], atoms[-1])))
                prev, bond = len(atoms) - 1, None
        if rings or stack:
            raise ValueError(f"unclosed ring or branch in {smiles!r}")
        mol = Molecule()
        mol.adj = [[] for _ in atoms]
        single = [0] * len(atoms)  # sum of the orders of non-aromatic bonds
        arom = [0] * len(atoms)  # number of aromatic bonds
        for i, j, order in bonds:
            mol.adj[i].append(j)
            mol.adj[j].append(i)
            for k in (i, j):
                if order:
                    single[k] += order
                else:
                    arom[k] += 1
        for i, (el, aromatic, h) in enumerate(atoms):
            mol.z.append(_Z[el])
            mol.hydrogens.append(_implicit_h(el, aromatic, single[i], arom[i]) if h is None else h)
        mols.append(mol)
    return mols


def _order(bond: str | None, a: tuple[str, bool, Any], b: tuple[str, bool, Any]) -> int:
    """A bond's order; 0 for aromatic (':' or no symbol between two aromatic atoms)."""
    if bond is None:
        return 0 if a[1] and b[1] else 1
    return _BOND[bond]


def _implicit_h(el: str, aromatic: bool, single: int, arom: int) -> int:
    """Hydrogens of an organic-subset atom: the lowest default valence that fits, minus its bond
    orders. Aromatic bonds count 1, plus 1 for the Kekule double bond of an aromatic c or b, and
    of an aromatic n or p with fewer than three bonds (pyridine-type, not pyrrole-type); aromatic
    o and s have none."""
    bonds = single + arom
    if aromatic and (el in ("C", "B") or (el in ("N", "P") and bonds < 3)):
        bonds += 1
    for v in _VALENCES[el]:
        if v >= bonds:
            return v - bonds
    return 0


# ---- chython's encoding (chython/algorithms/mapping/attention.py) ----
_MAX_DISTANCE, _MAX_NEIGHBORS = 10, 14


def _distances(mol: Molecule) -> np.ndarray:
    n = len(mol)
    d = np.full((n, n), -1, dtype=np.int64)
    for s in range(n):
        d[s, s] = 0
        queue = deque([s])
        while queue:
            i = queue.popleft()
            for j in mol.adj[i]:
                if d[s, j] < 0:
                    d[s, j] = d[s, i] + 1
                    queue.append(j)
    d = np.where(d < 0, 1, np.minimum(d, _MAX_DISTANCE))  # unreachable -> 1, as chython
    return d + 2


def encode(reaction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(atoms, neighbors, distances, roles) of a reaction SMILES, unbatched int64, and what the
    mapping metric needs (elements, adjacency, token positions of reactant / product atoms)."""
    reactants_smi, _, products_smi = reaction.split(">")
    sides = (parse_smiles(reactants_smi), parse_smiles(products_smi))
    atoms, neighbors, roles = [0], [0], [1]
    blocks = []
    for role, mols in zip((2, 3), sides, strict=True):
        for mol in mols:
            atoms.append(1)
            neighbors.append(0)
            roles.append(0)
            atoms.extend(z + 2 for z in mol.z)
            neighbors.extend(min(len(a) + h, _MAX_NEIGHBORS) + 2
                             for a, h in zip(mol.adj, mol.hydrogens, strict=True))
            roles.extend([role] * len(mol))
            block = np.ones((len(mol) + 1, len(mol) + 1), dtype=np.int64)
            block[1:, 1:] = _distances(mol)
            blocks.append(block)
    total = len(roles)
    distances = np.zeros((total, total), dtype=np.int64)
    distances[0, 0] = 1
    i = 1
    for b in blocks:
        distances[i:i + len(b), i:i + len(b)] = b
        i += len(b)
    meta = {}
    for key, mols in zip(("r", "p"), sides, strict=True):
        n = sum(len(m) for m in mols)
        adj = np.zeros((n, n), dtype=bool)
        k = 0
        for m in mols:
            for a, nbrs in enumerate(m.adj):
                adj[k + a, [k + b for b in nbrs]] = True
            k += len(m)
        meta[key + "_z"] = np.array([z for m in mols for z in m.z])
        meta[key + "_adj"] = adj
    roles_a = np.array(roles, dtype=np.int64)
    meta["r_pos"] = np.flatnonzero(roles_a == 2)
    meta["p_pos"] = np.flatnonzero(roles_a == 3)
    return (np.array(atoms, dtype=np.int64), np.array(neighbors, dtype=np.int64), distances,
            roles_a, meta)


def _greedy_mapping(am: np.ndarray, r_adj: np.ndarray, p_adj: np.ndarray,
                    multiplier: float = 1.75) -> np.ndarray:
    """chython's `_greedy_mapping`: for each product atom, the index of its reactant atom (-1:
    unmapped). am: (product atoms, reactant atoms) attention."""
    am = am.copy()
    pa = am.shape[0]
    mapping = np.full(pa, -1)
    scope = np.zeros(pa, dtype=bool)
    seen = np.ones(pa, dtype=bool)
    for x in range(pa):
        if x and scope.any():
            rows = np.flatnonzero(scope)
            i, j = np.unravel_index(np.argmax(am[rows]), (len(rows), am.shape[1]))
            i = rows[i]
        else:
            i, j = np.unravel_index(np.argmax(am), am.shape)
        if np.isclose(am[i, j], 0.0):
            break
        mapping[i] = j
        am[np.ix_(p_adj[i], r_adj[j])] *= multiplier
        am[i] = 0
        am[:, j] = 0
        seen[i] = False
        scope[i] = False
        scope[p_adj[i] & seen] = True
    return mapping


def aam_agreement(metas: list[dict[str, Any]]) -> Any:
    """(artifact outputs, source outputs, labels) -> the share of product atoms that chython's
    greedy mapping maps to the same reactant atom from both attentions, averaged over reactions."""

    def mapping(att: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        p2r = att[np.ix_(meta["p_pos"], meta["r_pos"])]
        r2p = att[np.ix_(meta["r_pos"], meta["p_pos"])]
        equal = meta["p_z"][:, None] == meta["r_z"][None, :]
        return _greedy_mapping((p2r + r2p.T) * equal, meta["r_adj"], meta["p_adj"])

    def metric(artifact: list[np.ndarray], source: list[np.ndarray], labels: np.ndarray | None) -> float:
        a, s = np.asarray(artifact[0]), np.asarray(source[0])
        length = a.shape[-1]
        a, s = a.reshape(-1, length, length), s.reshape(-1, length, length)
        if len(a) != len(metas) or len(s) != len(metas):
            raise ValueError(f"aam_agreement: {len(a)} / {len(s)} outputs for {len(metas)} reactions")
        return float(np.mean([np.mean(mapping(a[k], m) == mapping(s[k], m))
                              for k, m in enumerate(metas)]))

    return metric


def model_path() -> Path:
    spec = importlib.util.find_spec("chython_rxnmap")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"chython_rxnmap is not installed: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "rxnmap.onnx"


def load(small: bool = False) -> ZooModel:
    if miss := missing(REQUIRES):
        raise ImportError(f"{NAME} needs {', '.join(miss)}: {INSTALL}")
    length, n_eval, n_calib = (32, 16, 16) if small else (64, 64, 37)
    encoded = [encode(smi) for _, smi in REACTIONS]
    encoded = [e for e in encoded if len(e[0]) <= length][: n_eval + n_calib]
    if len(encoded) < n_eval + n_calib:
        raise RuntimeError(f"only {len(encoded)} reactions fit {length} tokens")
    n = len(encoded)
    atoms = np.zeros((n, length), dtype=np.int64)
    neighbors = np.zeros((n, length), dtype=np.int64)
    distances = np.zeros((n, length, length), dtype=np.int64)
    roles = np.zeros((n, length), dtype=np.int64)
    distances[:, np.arange(length), np.arange(length)] = 1  # padding tokens attend to themselves
    for k, (a, nb, d, r, _) in enumerate(encoded):
        atoms[k, :len(a)], neighbors[k, :len(a)], distances[k, :len(a), :len(a)], roles[k, :len(a)] \
            = a, nb, d, r
    arrays = (atoms, neighbors, distances, roles)
    evaluation = tuple(x[:n_eval] for x in arrays)
    calibration = tuple(x[n_eval:] for x in arrays)
    return ZooModel(
        name=NAME,
        model=str(model_path()),
        example_inputs=tuple(x[:1] for x in evaluation),
        evaluation=evaluation,
        calibration=calibration,
        weights="trained: chython-rxnmap 2.0 wheel, chython_rxnmap/rxnmap.onnx (reaction graph "
                "transformer for atom-to-atom mapping, USPTO + Pistachio)",
        data=f"{n_eval} + {n_calib} textbook reactions written as reaction SMILES, encoded as chython "
             f"does (atoms, neighbors, distances, roles: int64), padded to {length} tokens",
        kind="reaction-mapping",
        task_metric=aam_agreement([e[4] for e in encoded[:n_eval]]),
        task_metric_name="aam_agreement",
        notes={"seq_len": length, "batch": "fixed to 1 in the ONNX",
               "output": "attention (L, L), no batch axis",
               "max_tokens": int(max(len(e[0]) for e in encoded))},
    )
