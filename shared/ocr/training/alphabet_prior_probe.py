"""Probe (attempt 21): would a prior over the text's alphabet fix the main model's case errors?

  python alphabet_prior_probe.py captcha-fonts captcha-default pillow phrase

Reads each committed validation image with model/captcha.onnx (onnxruntime),
takes the greedy CTC path, and for each emitted character the class
probabilities at its surest frame. Then it picks, for the whole string, the
alphabet with the highest posterior under gen.rand_text's modes (mixed 0.60,
digits 0.15, digits + upper 0.15, digits + lower 0.10), scoring each mode as
P(mode) * prod_i p_i(c_i) * (62 / |alphabet|) with c_i the best character of
that alphabet (a uniform prior over the 62 characters in training, a uniform
one over the mode's alphabet in the text). Strings with a non-alphanumeric
character are left as read. Prints greedy and prior-decoded exact accuracy.
Nothing here is tuned: the mode shares are rand_text's.
"""
import os,sys,json,numpy as np,onnxruntime as ort
from PIL import Image
from preprocess import load_config, preprocess, InputSpec
from evaluate import read_labels
MD='../model'; cfg=load_config(MD)
charset=cfg['charset'] if 'charset' in cfg else None
so=ort.SessionOptions(); so.intra_op_num_threads=2
s=ort.InferenceSession(os.path.join(MD,'captcha.onnx'),so); inp=s.get_inputs()[0].name
spec=InputSpec.from_config(cfg)
D='0123456789';U='ABCDEFGHIJKLMNOPQRSTUVWXYZ';L=U.lower()
MODES=[('mixed',D+U+L,0.60),('digits',D,0.15),('upper',D+U,0.15),('lower',D+L,0.10)]
K=62
def decode(lp):
    best=lp.argmax(-1); pos=[];prev=0
    for t,b in enumerate(best):
        if b!=prev and b!=0: pos.append([t])
        elif b==prev and b!=0: pos[-1].append(t)
        prev=b
    return best,pos
def run(style):
    rows=read_labels(f'../validation/{style}')
    g=m=0; changed=0
    for name,lab in rows:
        img=Image.open(f'../validation/{style}/{name}')
        x=preprocess(img,spec)
        lp=s.run(None,{inp:x[None,None]})[0][0]
        best,pos=decode(lp)
        greedy=''.join(charset[best[p[0]]-1] for p in pos)
        # per position: probs at the frame of max non-blank prob
        P=[]
        for p in pos:
            fr=max(p,key=lambda t: 1-np.exp(lp[t,0]))
            pr=np.exp(lp[fr,1:]); P.append(pr/pr.sum())
        out=greedy
        if greedy and all(c.isalnum() for c in greedy):
            bestsc=None
            for mname,A,pm in MODES:
                idx=[charset.index(c) for c in A]
                txt=''.join(A[int(np.argmax(pr[idx]))] for pr in P)
                sc=np.log(pm)+sum(np.log(pr[idx].max()+1e-12) for pr in P)+len(P)*np.log(K/len(A))
                if bestsc is None or sc>bestsc: bestsc,out=sc,txt
        g+=greedy==lab; m+=out==lab; changed+=out!=greedy
    print(style,len(rows),'greedy %.1f'%(100*g/len(rows)),'mode-prior %.1f'%(100*m/len(rows)),'changed',changed,flush=True)
for st in sys.argv[1:]: run(st)
