//! MMKD, adaptive multi-teacher KD with meta-learning (Zhang, Chen, Wang 2023; methods.md §4.1).
//! Two weight networks φ give per-sample teacher weights: LogitsWeight reads the teachers' and
//! the (detached) student's logits, FeatureWeight the rows of the Gram matrices of the teachers'
//! and the student's feature maps. The student minimises
//! L_in = γ·CE + α·(1/B)·Σ w^L·KL + β·(1/B)·Σ w^F·MSE(Embed_k(f_s), f_k) (no 1/K).
//! Every `meta_freq` steps (and on an epoch's last step) φ takes an Adam step on the
//! hypergradient of the CE of a looked-ahead student on a meta batch drawn from the hard buffer:
//! θ' = θ − lr·∇θ L_match(θ, φ), L_match = α·L_kd + β·L_feat, dφ = ∂CE(θ')/∂φ, differentiated
//! through the lookahead (`unroll: 3` takes the reference's two matching steps and one CE step
//! first). The lookahead is discarded (rollback), BatchNorm statistics included.
//!
//! Each epoch's record carries, beside the logit weights, the FeatureWeight net's weights, each
//! teacher's unweighted feature loss and the meta-gradient norm of each weight network: with raw
//! Gram matrices (the reference's design, `normalize_gram: false`) the FeatureWeight net starts
//! saturated and its meta-gradient is near zero, which these figures make visible.
//!
//! Deviations from the reference, all documented in docs/methods.md: the lookahead steps are
//! plain SGD (the reference replays momentum SGD); the connectors are held fixed during the
//! lookahead (θ is the student's parameters); the hard buffer's contents and sampling state are
//! not part of checkpoints.

use super::features::FeatureLevel;
use super::{ce_term, feature_weight, BatchOutputs, LossTerm, Method, MethodFigures, Setup, StepContext};
use crate::distill::losses::{ce_per_sample, kd_per_sample, mse_per_sample};
use crate::distill::stats::FigureTrack;
mod meta;

use crate::graph::RunMode;
use crate::recipe::schema::{Distill, MmkdOptions};
use crate::student::Student;
use meta::{Adam, HardBuffer, Samples, WeightNet};
use std::cell::RefCell;
use tch::{nn, Kind, Tensor};

pub struct Mmkd {
    ce: f64,
    kd: f64,
    feat: f64,
    temperature: f64,
    o: MmkdOptions,
    features: Option<FeatureLevel>,
    /// φ: the weight networks, in their own store (not trained by the student's SGD).
    phi: nn::VarStore,
    logits_net: WeightNet,
    feature_net: Option<WeightNet>,
    adam: RefCell<Adam>,
    buffer: RefCell<Option<HardBuffer>>,
    figures: RefCell<FigureTrack>,
}

/// MMKD's options, and its single feature pair aligned by pooling.
pub fn check(cfg: &Distill, _: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let o = cfg.mmkd.clone().unwrap_or_default();
    if ![1, 3].contains(&o.unroll) {
        problems.push(format!("distill.mmkd.unroll: {} (1 for the one-step lookahead, 3 for the reference's unrolled steps)", o.unroll));
    }
    if o.meta_freq == 0 {
        problems.push("distill.mmkd.meta_freq: must be at least 1".into());
    }
    problems.extend(super::number("distill.mmkd.meta_lr", o.meta_lr, 0.0, false));
    problems.extend(super::number("distill.mmkd.meta_weight_decay", o.meta_weight_decay, 0.0, true));
    if o.hard_buffer && o.buffer_size < 1 {
        problems.push(format!("distill.mmkd.buffer_size: must be at least 1, got {}", o.buffer_size));
    }
    if cfg.features.as_ref().is_some_and(|f| f.len() > 1) {
        problems.push("distill.features: mmkd weights one feature pair (its FeatureWeight net reads that pair's Gram matrices)".into());
    }
    if cfg.features.iter().flatten().any(|p| p.connector == Some(crate::recipe::schema::ConnectorKind::ConvReg)) {
        problems.push("distill.features: mmkd aligns the two maps by pooling before its connector; use embed or embed3, not conv_reg".into());
    }
    problems
}

pub fn build(cfg: &Distill, setup: &Setup) -> anyhow::Result<Box<dyn Method>> {
    Ok(Box::new(Mmkd::new(cfg, setup)?))
}

impl Mmkd {
    fn new(cfg: &Distill, setup: &Setup) -> anyhow::Result<Mmkd> {
        let o = cfg.mmkd.clone().unwrap_or_default();
        let k = setup.teachers as i64;
        let phi = nn::VarStore::new(setup.device);
        let logits_net = WeightNet::new(&(phi.root() / "logits_weight"), setup.num_classes * (k + 1), k);
        let features = FeatureLevel::new(cfg, setup)?;
        let batch = setup.batch_size;
        let feature_net = features.as_ref().map(|_| WeightNet::new(&(phi.root() / "feature_weight"), batch * (k + 1), k));
        crate::distill::init::reset_like_pytorch(&phi, setup.seed, "mmkd.phi")?;
        let params: Vec<Tensor> = sorted_variables(&phi).into_iter().map(|(_, t)| t).collect();
        let adam = Adam::new(params, o.meta_lr, o.meta_weight_decay);
        Ok(Mmkd {
            ce: cfg.loss_weights.ce,
            kd: cfg.loss_weights.kd,
            feat: feature_weight(cfg),
            temperature: cfg.temperature,
            buffer: RefCell::new(None),
            o,
            features,
            phi,
            logits_net,
            feature_net,
            adam: RefCell::new(adam),
            figures: RefCell::new(FigureTrack::default()),
        })
    }
}

fn sorted_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The Gram matrix F·Fᵀ of a batch of maps [B, ...] → [B, B], optionally Frobenius-normalised.
fn gram(f: &Tensor, normalize: bool) -> Tensor {
    let f = f.flatten(1, -1);
    let g = f.matmul(&f.tr());
    if normalize {
        &g / g.square().sum(Kind::Float).sqrt().clamp_min(1e-12)
    } else {
        g
    }
}

/// The method's unweighted losses for one batch, and the feature level's weights [B, K] and
/// per-teacher losses [K, B] they came from.
struct Objectives {
    kd: Tensor,
    feat: Option<Tensor>,
    feature_parts: Option<(Tensor, Tensor)>,
}

impl Mmkd {
    /// LogitsWeight's per-sample teacher weights [B, K] from the teachers' and the detached
    /// student's logits.
    fn logit_weights(&self, batch: &BatchOutputs) -> Tensor {
        let mut input: Vec<Tensor> = batch.teachers.iter().map(Tensor::shallow_clone).collect();
        input.push(batch.student.detach());
        self.logits_net.forward(&Tensor::cat(&input, 1))
    }

    fn objectives(&self, batch: &BatchOutputs) -> Objectives {
        let w_logits = self.logit_weights(batch);
        let kl = Tensor::stack(&batch.teachers.iter().map(|z| kd_per_sample(batch.student, z, self.temperature)).collect::<Vec<_>>(), 0);
        let b = batch.student.size()[0] as f64;
        let kind = batch.student.kind();
        let kd = (w_logits.tr() * kl).sum(kind) / b;
        let (feat, feature_parts) = match (&self.features, &self.feature_net) {
            (Some(features), Some(net)) => {
                let pair = features.project_mmkd(batch).remove(0);
                let mse = Tensor::stack(&pair.iter().map(|p| mse_per_sample(&p.student, &p.teacher)).collect::<Vec<_>>(), 0);
                let mut rows: Vec<Tensor> = batch.teacher_feats.iter().map(|f| gram(&f[0], self.o.normalize_gram)).collect();
                rows.push(gram(&batch.student_feats[0].detach(), self.o.normalize_gram));
                let w_feat = net.forward(&Tensor::cat(&rows, 1));
                (Some((w_feat.tr() * &mse).sum(kind) / b), Some((w_feat, mse)))
            }
            _ => (None, None),
        };
        Objectives { kd, feat, feature_parts }
    }

    /// L_match = α·L_kd + β·L_feat.
    fn matching_loss(&self, batch: &BatchOutputs) -> Tensor {
        let o = self.objectives(batch);
        match o.feat {
            Some(f) => o.kd * self.kd + f * self.feat,
            None => o.kd * self.kd,
        }
    }

    /// Records the L2 norm of each weight network's share of a hypergradient (in `phi_params`
    /// order).
    fn note_meta_gradient(&self, grads: &[Tensor]) {
        let _guard = tch::no_grad_guard();
        let names: Vec<String> = sorted_variables(&self.phi).into_iter().map(|(n, _)| n).collect();
        let mut track = self.figures.borrow_mut();
        for (net, figure) in [("logits_weight.", "logit_net_meta_grad_norm"), ("feature_weight.", "feature_net_meta_grad_norm")] {
            let squares: Vec<Tensor> =
                names.iter().zip(grads).filter(|(n, _)| n.starts_with(net)).map(|(_, g)| g.to_kind(Kind::Double).square().sum(Kind::Double)).collect();
            if !squares.is_empty() {
                track.scalar(figure, &Tensor::stack(&squares, 0).sum(Kind::Double).sqrt());
            }
        }
    }

    fn phi_params(&self) -> Vec<Tensor> {
        sorted_variables(&self.phi).into_iter().map(|(_, t)| t).collect()
    }

    /// dφ of the lookahead: the student's CE on `meta` after `unroll` plain SGD steps with step
    /// size `lr`, differentiated through those steps. θ stays untouched (the forwards run at
    /// substituted parameters); BatchNorm statistics updated on the way are restored.
    pub fn hypergradient(&self, student: &Student, meta: &Samples, lr: f64, epoch: usize) -> anyhow::Result<Vec<Tensor>> {
        let saved = BufferSnapshot::take(student, self.features.as_ref().map(|f| &f.vs));
        let names: Vec<String> = student.parameters().into_iter().map(|(n, _)| n).collect();
        let mut theta: Vec<Tensor> = student.parameters().into_iter().map(|(_, t)| t).collect();
        let named = |theta: &[Tensor]| names.iter().cloned().zip(theta.iter().map(Tensor::shallow_clone)).collect::<Vec<_>>();
        let result = (|| {
            for step in 0..self.o.unroll {
                let (z, feats) = student.forward_with_params(&meta.x, RunMode::Train, &named(&theta))?;
                let loss = if self.o.unroll == 3 && step == 2 {
                    ce_per_sample(&z, &meta.labels).mean(z.kind())
                } else {
                    let batch = BatchOutputs {
                        student: &z,
                        student_feats: &feats,
                        teachers: &meta.teachers,
                        teacher_feats: &meta.teacher_feats,
                        labels: &meta.labels,
                        epoch,
                        progress: epoch as f64,
                        dist: None,
                    };
                    self.matching_loss(&batch)
                };
                let grads = Tensor::run_backward(&[loss], &theta, true, true);
                // A parameter the loss does not reach (an unused initializer of an imported
                // student) has no gradient and stays where it is.
                theta = theta.iter().zip(&grads).map(|(t, g)| if g.defined() { t - g * lr } else { t.shallow_clone() }).collect();
            }
            let (z, _) = student.forward_with_params(&meta.x, RunMode::Train, &named(&theta))?;
            let outer = ce_per_sample(&z, &meta.labels).mean(z.kind());
            let phi = self.phi_params();
            let grads = Tensor::run_backward(&[outer], &phi, false, false);
            Ok(grads.into_iter().zip(&phi).map(|(g, p)| if g.defined() { g } else { p.zeros_like() }).collect())
        })();
        saved.restore();
        result
    }
}

/// Copies of the BatchNorm running statistics (student and connectors), put back after the
/// lookahead so it leaves no trace.
struct BufferSnapshot {
    saved: Vec<(Tensor, Tensor)>,
}

impl BufferSnapshot {
    fn take(student: &Student, modules: Option<&nn::VarStore>) -> BufferSnapshot {
        let _guard = tch::no_grad_guard();
        let mut saved: Vec<(Tensor, Tensor)> = student.state().into_iter().filter(|(_, t)| !t.requires_grad()).map(|(_, t)| (t.copy(), t)).collect();
        if let Some(vs) = modules {
            saved.extend(vs.variables().into_iter().filter(|(_, t)| !t.requires_grad()).map(|(_, t)| (t.copy(), t)));
        }
        BufferSnapshot { saved }
    }

    fn restore(self) {
        let _guard = tch::no_grad_guard();
        for (copy, mut live) in self.saved {
            live.copy_(&copy);
        }
    }
}

impl Method for Mmkd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let o = self.objectives(batch);
        if let Some((w, mse)) = &o.feature_parts {
            self.figures.borrow_mut().feature_batch(&w.tr(), mse);
        }
        let mut terms = vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: o.kd * self.kd }];
        if let Some(f) = o.feat {
            terms.push(LossTerm { name: "feat", value: f * self.feat });
        }
        Ok(terms)
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        let _guard = tch::no_grad_guard();
        Ok(Some(self.logit_weights(batch).tr()))
    }

    fn modules(&self) -> Option<&nn::VarStore> {
        self.features.as_ref().map(|f| &f.vs)
    }

    fn after_step(&self, ctx: &StepContext) -> anyhow::Result<()> {
        let b = ctx.batch;
        let current = || Samples {
            x: ctx.x.shallow_clone(),
            labels: b.labels.shallow_clone(),
            teachers: b.teachers.iter().map(Tensor::shallow_clone).collect(),
            teacher_feats: b.teacher_feats.iter().map(|f| f.iter().map(Tensor::shallow_clone).collect()).collect(),
        };
        let meta = if self.o.hard_buffer {
            let mut slot = self.buffer.borrow_mut();
            let buffer = slot.get_or_insert_with(|| HardBuffer::new(self.o.buffer_size, ctx.seed ^ 0x6d6d_6b64));
            let wrong = b.student.detach().argmax(1, false).ne_tensor(b.labels);
            buffer.offer(current(), &wrong);
            let due = ctx.step_in_epoch.is_multiple_of(self.o.meta_freq) || ctx.last_in_epoch;
            if !due {
                return Ok(());
            }
            let sampled = buffer.sample(b.labels.size()[0]).filter(|m| m.x.size()[0] == b.labels.size()[0]);
            // Data parallel, each rank holds its own buffer: the meta step runs when every
            // rank has a meta batch, so every rank takes it.
            let everyone = match b.dist {
                Some(group) => group.all(sampled.is_some())?,
                None => sampled.is_some(),
            };
            match sampled {
                Some(m) if everyone => m,
                _ => return Ok(()),
            }
        } else {
            if !(ctx.step_in_epoch.is_multiple_of(self.o.meta_freq) || ctx.last_in_epoch) {
                return Ok(());
            }
            current()
        };
        let grads = self.hypergradient(ctx.student, &meta, ctx.lr, b.epoch)?;
        // Data parallel: every rank's meta-gradient on its own meta batch, averaged, so the
        // weighting networks take one identical Adam step everywhere.
        if let Some(group) = b.dist {
            let dense: Vec<Tensor> = grads.iter().map(Tensor::contiguous).collect();
            group.allreduce_mean(&dense.iter().collect::<Vec<_>>())?;
            for (g, d) in grads.iter().zip(&dense) {
                if g.data_ptr() != d.data_ptr() {
                    g.shallow_clone().f_copy_(d)?;
                }
            }
        }
        self.note_meta_gradient(&grads);
        self.adam.borrow_mut().step(&grads);
        Ok(())
    }

    fn take_figures(&self) -> MethodFigures {
        self.figures.borrow_mut().take()
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut s: Vec<(String, Tensor)> = sorted_variables(&self.phi).into_iter().map(|(n, t)| (format!("phi.{n}"), t)).collect();
        s.extend(self.adam.borrow().state("phi_adam"));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::golden::case;
    use crate::graph::{Dim, Graph, ValueDecl};
    use crate::host::HostRead;
    use onnx_protobuf::tensor_proto::DataType;
    use tch::Device;

    /// A linear student logits = x·Wᵀ + b as a one-node graph.
    fn linear_student(w: &Tensor, b: &Tensor) -> Student {
        let mut node = onnx_protobuf::NodeProto::new();
        node.op_type = "Gemm".into();
        node.name = "fc".into();
        node.input = vec!["x".into(), "fc.weight".into(), "fc.bias".into()];
        node.output = vec!["logits".into()];
        node.attribute = vec![crate::onnx::attr::int("transB", 1)];
        let (c, d) = (w.size()[0], w.size()[1]);
        let graph = Graph {
            name: "linear".into(),
            opset: 13,
            producer: "test".into(),
            inputs: vec![ValueDecl { name: "x".into(), elem_type: DataType::FLOAT as i32, dims: vec![Dim::Symbolic("batch".into()), Dim::Fixed(d)] }],
            outputs: vec![ValueDecl { name: "logits".into(), elem_type: DataType::FLOAT as i32, dims: vec![Dim::Symbolic("batch".into()), Dim::Fixed(c)] }],
            initializers: vec![("fc.weight".into(), w.shallow_clone()), ("fc.bias".into(), b.shallow_clone())],
            nodes: vec![node],
            metadata: vec![],
        };
        Student::new(graph, Device::Cpu).unwrap()
    }

    /// An MMKD with logit weights only, its LogitsWeight net set to the given tensors.
    fn logit_only(k: i64, c: i64, batch: i64, nets: &[(&str, Tensor)], kind: Kind) -> Mmkd {
        let cfg =
            Distill { method: "mmkd".into(), loss_weights: crate::recipe::schema::LossWeights { ce: 1.0, kd: 1.0, feat: Some(0.0) }, ..Default::default() };
        let setup = Setup {
            teachers: k as usize,
            num_classes: c,
            student_shapes: vec![],
            teacher_shapes: vec![vec![]; k as usize],
            teacher_heads: vec![],
            device: Device::Cpu,
            batch_size: batch,
            epochs: 1,
            seed: 0,
        };
        let mut m = Mmkd::new(&cfg, &setup).unwrap();
        if kind == Kind::Double {
            m.phi.double();
        }
        let vars = m.phi.variables();
        tch::no_grad(|| {
            for (name, t) in nets {
                let mut v = vars[&format!("logits_weight.{name}")].shallow_clone();
                v.copy_(t);
            }
        });
        m
    }

    fn fixture_nets(c: &crate::distill::golden::Case) -> Vec<(&'static str, Tensor)> {
        vec![("0.weight", c.input("logits_w1")), ("0.bias", c.input("logits_b1")), ("2.weight", c.input("logits_w2")), ("2.bias", c.input("logits_b2"))]
    }

    /// The weight networks and weighted losses on fixed inputs equal PyTorch's.
    #[test]
    fn logit_weights_and_loss_match_pytorch() {
        let c = case("mmkd_weights");
        let teachers = c.per_teacher("teachers");
        let (k, b, classes) = (teachers.len() as i64, teachers[0].size()[0], teachers[0].size()[1]);
        let m = logit_only(k, classes, b, &fixture_nets(&c), Kind::Float);
        let student = c.input("student");
        let batch = BatchOutputs {
            student: &student,
            student_feats: &[],
            teachers: &teachers,
            teacher_feats: &(0..k).map(|_| Vec::new()).collect::<Vec<Vec<Tensor>>>(),
            labels: &Tensor::zeros([b], (Kind::Int64, Device::Cpu)),
            epoch: 1,
            progress: 1.0,
            dist: None,
        };
        c.check("w_logits", &m.logit_weights(&batch), 1e-5);
        c.check("l_kd", &m.objectives(&batch).kd, 1e-5);
    }

    /// The one-step hypergradient equals PyTorch's exact autograd value for a linear student.
    #[test]
    fn hypergradient_matches_pytorch() {
        let c = case("mmkd_hypergradient");
        let teachers = c.per_teacher("teachers");
        let (k, b, classes) = (teachers.len() as i64, teachers[0].size()[0], teachers[0].size()[1]);
        let m = logit_only(k, classes, b, &fixture_nets(&c), Kind::Float);
        let student = linear_student(&c.input("student_weight"), &c.input("student_bias"));
        let meta = Samples { x: c.input("x"), labels: c.labels("labels"), teachers, teacher_feats: (0..k).map(|_| Vec::new()).collect::<Vec<Vec<Tensor>>>() };
        let grads = m.hypergradient(&student, &meta, c.param("lr"), 1).unwrap();
        // φ in sorted order: 0.bias, 0.weight, 2.bias, 2.weight
        for (g, name) in grads.iter().zip(["dphi_b1", "dphi_w1", "dphi_b2", "dphi_w2"]) {
            c.check(name, g, 1e-5);
        }
    }

    /// The hypergradient against central finite differences of the looked-ahead CE, in double
    /// precision, for one and for three unrolled steps, on a tiny convolutional student whose
    /// BatchNorm runs in training mode.
    #[test]
    fn hypergradient_matches_finite_differences() {
        tch::manual_seed(4);
        let (k, classes, b) = (2i64, 10i64, 6i64);
        for unroll in [1usize, 3] {
            let spec = crate::zoo::ArchSpec { num_classes: classes, width: 0.25, image_size: 8 };
            let mut graph = crate::zoo::build("resnet8", &spec, Device::Cpu).unwrap();
            for (_, t) in graph.initializers.iter_mut() {
                *t = t.to_kind(Kind::Double);
            }
            let student = Student::new(graph, Device::Cpu).unwrap();
            let nets: Vec<(&str, Tensor)> = vec![];
            let mut m = logit_only(k, classes, b, &nets, Kind::Double);
            m.o.unroll = unroll;
            // Every random value comes from the test's own generator, not libtorch's global one,
            // which the tests running beside this one draw from and reseed at any moment: the
            // weights (redrawn at the scale their initialisation gave them) and the data.
            let mut rng = crate::data::rng::Rng::new(4 + unroll as u64);
            let mut normal = |shape: &[i64], std: f64| {
                let n: i64 = shape.iter().product();
                Tensor::from_slice(&(0..n).map(|_| rng.normal() * std).collect::<Vec<f64>>()).view(shape)
            };
            tch::no_grad(|| {
                for (_, mut t) in student.parameters().into_iter().chain(sorted_variables(&m.phi)).filter(|(_, t)| t.numel() > 1) {
                    let std = t.std(true).read_f64().max(1e-3);
                    t.copy_(&normal(&t.size(), std).to_kind(t.kind()));
                }
            });
            if unroll > 1 {
                // LogitsWeight reads the student's logits through a stop-gradient (as the
                // reference does), so past the first step the hypergradient ignores how φ moves
                // that input; finite differences do not. With the columns that read it at zero
                // that path vanishes to first order and the two must agree.
                let w = m.phi.variables()["logits_weight.0.weight"].shallow_clone();
                tch::no_grad(|| {
                    let _ = w.narrow(1, classes * k, classes).fill_(0.0);
                });
            }
            let x = normal(&[b, 3, 8, 8], 1.0);
            let teachers = (0..k).map(|_| normal(&[b, classes], 3.0)).collect();
            let labels = Tensor::from_slice(&(0..b).map(|_| rng.below(classes as u64) as i64).collect::<Vec<i64>>());
            let meta = Samples { x, labels, teachers, teacher_feats: (0..k).map(|_| Vec::new()).collect::<Vec<Vec<Tensor>>>() };
            let lr = 0.5;
            let analytic = m.hypergradient(&student, &meta, lr, 1).unwrap();
            // Finite differences on a few coordinates of every φ tensor.
            let lookahead_ce = |m: &Mmkd| -> f64 {
                let names: Vec<String> = student.parameters().into_iter().map(|(n, _)| n).collect();
                let mut theta: Vec<Tensor> = student.parameters().into_iter().map(|(_, t)| t).collect();
                let saved = BufferSnapshot::take(&student, None);
                for step in 0..unroll {
                    let named: Vec<(String, Tensor)> = names.iter().cloned().zip(theta.iter().map(Tensor::shallow_clone)).collect();
                    let (z, _) = student.forward_with_params(&meta.x, RunMode::Train, &named).unwrap();
                    let loss = if unroll == 3 && step == 2 {
                        ce_per_sample(&z, &meta.labels).mean(Kind::Double)
                    } else {
                        let batch = BatchOutputs {
                            student: &z,
                            student_feats: &[],
                            teachers: &meta.teachers,
                            teacher_feats: &meta.teacher_feats,
                            labels: &meta.labels,
                            epoch: 1,
                            progress: 1.0,
                            dist: None,
                        };
                        m.matching_loss(&batch)
                    };
                    let g = Tensor::run_backward(&[loss], &theta, false, false);
                    theta = theta.iter().zip(&g).map(|(t, g)| (t - g * lr).detach().set_requires_grad(true)).collect();
                }
                let named: Vec<(String, Tensor)> = names.iter().cloned().zip(theta.iter().map(Tensor::shallow_clone)).collect();
                let (z, _) = student.forward_with_params(&meta.x, RunMode::Train, &named).unwrap();
                let v = ce_per_sample(&z, &meta.labels).mean(Kind::Double).read_f64();
                saved.restore();
                v
            };
            let eps = 1e-5;
            let phi = m.phi_params();
            let mut checked = 0;
            for (p, g) in phi.iter().zip(&analytic) {
                let n = p.numel() as i64;
                for i in [0, n / 2, n - 1] {
                    let flat = p.view([-1]);
                    let orig = crate::host::element_f64(&flat, i);
                    let set = |v: f64| {
                        tch::no_grad(|| {
                            let _ = flat.get(i).fill_(v);
                        })
                    };
                    set(orig + eps);
                    let up = lookahead_ce(&m);
                    set(orig - eps);
                    let down = lookahead_ce(&m);
                    set(orig);
                    let fd = (up - down) / (2.0 * eps);
                    let an = crate::host::element_f64(g, i);
                    assert!(
                        (fd - an).abs() <= 1e-6 + 1e-4 * an.abs().max(fd.abs()),
                        "unroll {unroll}: φ coordinate {i}: analytic {an:e} vs finite difference {fd:e}"
                    );
                    checked += 1;
                }
            }
            assert!(checked >= 12);
        }
    }
}
