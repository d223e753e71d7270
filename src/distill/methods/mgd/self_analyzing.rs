//! MGD's self-analyzing module (methods.md §4.2.1–4.2.2): two MLP branches on a frozen teacher's
//! pooled features f ∈ R^d. Branch A encodes to 64 dimensions ("high pressure") and branch D to
//! 256 ("low pressure"); each decodes back to class logits. They are trained as their own stage
//! before distillation, on the teacher's features, to match its predictions
//! (T_A² · KL(p^{T_A}(z_t) ‖ p^{T_A}(z_A)) + CE(z_A, y), T_A = 2; T_D = 8 for branch D), each
//! with its own SGD (lr 0.01, momentum 0.9, weight decay 5e-4, ×0.1 at 50% and 75% of the
//! epochs), one pass of branch A then one of branch D per epoch, keeping each branch's best
//! state by test accuracy. As in the reference, every pass runs the frozen teacher on freshly
//! augmented training images (the caller supplies each pass's features); the test features are
//! computed once, without augmentation.

use crate::data::rng::Rng;
use crate::distill::losses::{ce_per_sample, kd_per_sample};
use crate::distill::optim::Sgd;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Linear(a → b) → ReLU → Linear(b → c).
pub struct Mlp {
    first: nn::Linear,
    second: nn::Linear,
}

impl Mlp {
    pub fn new(p: &nn::Path, a: i64, b: i64, c: i64) -> Mlp {
        Mlp { first: nn::linear(p / "0", a, b, Default::default()), second: nn::linear(p / "2", b, c, Default::default()) }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.second.forward(&self.first.forward(x).relu())
    }
}

/// One granularity branch: encoder d → d → width, decoder width → d → classes.
pub struct Branch {
    pub encoder: Mlp,
    pub decoder: Mlp,
    /// The temperature the branch is trained and distilled at.
    pub temperature: f64,
    /// Its variables, for its optimizer and best-state copies.
    vars: Vec<(String, Tensor)>,
}

/// Encoder widths and temperatures of branches A and D.
pub const BRANCHES: [(&str, i64, f64); 2] = [("ak", 64, 2.0), ("dk", 256, 8.0)];

impl Branch {
    fn new(vs: &nn::VarStore, name: &str, d: i64, width: i64, classes: i64, temperature: f64) -> Branch {
        let before: Vec<String> = vs.variables().into_keys().collect();
        let encoder = Mlp::new(&(vs.root() / name / "encoder"), d, d, width);
        let decoder = Mlp::new(&(vs.root() / name / "decoder"), width, d, classes);
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(n, _)| !before.contains(n)).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Branch { encoder, decoder, temperature, vars }
    }

    pub fn logits(&self, f: &Tensor) -> Tensor {
        self.decoder.forward(&self.encoder.forward(f))
    }

    fn snapshot(&self) -> Vec<Tensor> {
        self.vars.iter().map(|(_, t)| t.detach().copy()).collect()
    }

    fn restore(&self, saved: &[Tensor]) {
        let _guard = tch::no_grad_guard();
        for ((_, t), s) in self.vars.iter().zip(saved) {
            t.shallow_clone().copy_(s);
        }
    }
}

/// A teacher's two branches.
pub struct SelfAnalyzing {
    pub vs: nn::VarStore,
    pub branches: Vec<Branch>,
}

/// What stage 1 trains on: the teacher's pooled features and logits, and the labels.
pub struct Features {
    pub pooled: Tensor,
    pub logits: Tensor,
    pub labels: Tensor,
}

/// The best test accuracy each branch reached, in `BRANCHES` order.
pub type BranchAccuracy = Vec<f64>;

impl SelfAnalyzing {
    /// Both branches, initialised as PyTorch initialises the reference's Linear layers.
    pub fn new(d: i64, classes: i64, device: tch::Device, seed: u64) -> anyhow::Result<SelfAnalyzing> {
        let vs = nn::VarStore::new(device);
        let branches = BRANCHES.iter().map(|(name, width, t)| Branch::new(&vs, name, d, *width, classes, *t)).collect();
        crate::distill::init::reset_like_pytorch(&vs, seed, "mgd.heads")?;
        Ok(SelfAnalyzing { vs, branches })
    }

    /// Stage 1: trains both branches for `epochs`, each pass on the features `train_pass(epoch,
    /// branch)` gives, and keeps each one's best state on `test`.
    pub fn train(
        &self,
        mut train_pass: impl FnMut(usize, usize) -> anyhow::Result<Features>,
        test: &Features,
        epochs: usize,
        batch: i64,
        seed: u64,
    ) -> anyhow::Result<BranchAccuracy> {
        let mut rng = Rng::new(seed);
        let mut opts: Vec<Sgd> = self.branches.iter().map(|b| Sgd::new(b.vars.clone_handles(), 0.01, 0.9, 5e-4, false)).collect();
        let mut best: Vec<(f64, Vec<Tensor>)> = self.branches.iter().map(|b| (-1.0, b.snapshot())).collect();
        for epoch in 0..epochs {
            let lr = 0.01
                * if epoch * 4 >= epochs * 3 {
                    0.01
                } else if epoch * 2 >= epochs {
                    0.1
                } else {
                    1.0
                };
            for (i, (b, opt)) in self.branches.iter().zip(opts.iter_mut()).enumerate() {
                opt.lr = lr;
                let train = train_pass(epoch, i)?;
                let n = train.labels.size()[0];
                let mut order: Vec<i64> = (0..n).collect();
                rng.shuffle(&mut order);
                for chunk in order.chunks(batch as usize) {
                    let idx = Tensor::from_slice(chunk).to_device(train.pooled.device());
                    let (f, z, y) = (train.pooled.index_select(0, &idx), train.logits.index_select(0, &idx), train.labels.index_select(0, &idx));
                    let out = b.logits(&f);
                    let loss = kd_per_sample(&out, &z, b.temperature).mean(Kind::Float) + ce_per_sample(&out, &y).mean(Kind::Float);
                    opt.zero_grad();
                    loss.backward();
                    opt.step();
                }
            }
            for (i, b) in self.branches.iter().enumerate() {
                let acc =
                    tch::no_grad(|| crate::metrics::top_k(&b.logits(&test.pooled).to_device(tch::Device::Cpu), &test.labels.to_device(tch::Device::Cpu), 1));
                if acc > best[i].0 {
                    best[i] = (acc, b.snapshot());
                }
            }
        }
        for (b, (_, saved)) in self.branches.iter().zip(&best) {
            b.restore(saved);
        }
        Ok(best.iter().map(|(a, _)| *a).collect())
    }
}

trait CloneHandles {
    fn clone_handles(&self) -> Vec<(String, Tensor)>;
}

impl CloneHandles for Vec<(String, Tensor)> {
    fn clone_handles(&self) -> Vec<(String, Tensor)> {
        self.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }
}
