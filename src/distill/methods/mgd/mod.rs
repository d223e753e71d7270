//! MGD, multi-granularity distillation (Shao & Chen 2021; methods.md §4.2), per teacher in a
//! multi-teacher run (§4.2.4). Before training, each teacher gets its self-analyzing module
//! (`self_analyzing`): branches A (64-d code, T = 2) and D (256-d code, T = 8) trained on
//! its frozen pooled features of freshly augmented training images, one pass per branch and
//! epoch, as the reference does. The student gets, per teacher, encoders of the same widths on its
//! own pooled vector, and learns
//! - the teachers' codes: L_enc = mean_k [T_A²·KL(E_A^t(f_t)/T_A ‖ E_A^s(f_s)/T_A) + same for D];
//! - their predictions: L_div = mean_k T²·KL(p^T(target_k) ‖ p^T(z_s)), where target_k is the
//!   teacher's logits (`mode: mag`) or the stable excitation z̄_k = (z_k + z_k,A + z_k,D)/3
//!   (`mode: mas`, the default);
//!
//! L = γ·CE + α·L_div + L_enc. The teachers are combined with equal weights (AVER). The
//! reference's CIFAR scripts weight CE 0.2 and L_div 0.8 (`loss_weights: {ce: 0.2, kd: 0.8}`);
//! the defaults here are 1 and 1, as for every method.

use super::{ce_term, BatchOutputs, LossTerm, Method, PrepareContext, Setup};
use crate::bad_input;
use crate::data::loader::Schedule;
use crate::data::rng::Rng;
use crate::distill::losses::kd_per_sample;
mod self_analyzing;

use crate::recipe::schema::{Distill, MgdMode, MgdOptions};
use self_analyzing::{Features, Mlp, SelfAnalyzing, BRANCHES};
use std::cell::RefCell;
use tch::{nn, Kind, Tensor};

pub struct Mgd {
    ce: f64,
    kd: f64,
    temperature: f64,
    o: MgdOptions,
    /// Per teacher, its self-analyzing module (trained in `prepare`, then frozen).
    heads: Vec<SelfAnalyzing>,
    /// The student's encoders, per teacher and branch, trained with the student.
    students: nn::VarStore,
    encoders: Vec<Vec<Mlp>>,
    summary: RefCell<Option<serde_json::Value>>,
}

fn width(shape: &[i64], what: &str) -> anyhow::Result<i64> {
    match shape {
        [_, d] => Ok(*d),
        other => Err(bad_input!("mgd reads {what}'s pooled feature vector, but its `pooled` tap has shape {other:?}")),
    }
}

pub fn build(cfg: &Distill, setup: &Setup) -> anyhow::Result<Box<dyn Method>> {
    let d_s = width(setup.student_shapes.first().map(Vec::as_slice).unwrap_or(&[]), "the student")?;
    let mut heads = Vec::new();
    let students = nn::VarStore::new(setup.device);
    let mut encoders = Vec::new();
    for (k, shapes) in setup.teacher_shapes.iter().enumerate() {
        let d_t = width(shapes.first().map(Vec::as_slice).unwrap_or(&[]), &format!("teacher {k}"))?;
        heads.push(SelfAnalyzing::new(d_t, setup.num_classes, setup.device, setup.seed ^ k as u64)?);
        encoders.push(BRANCHES.iter().map(|(name, w, _)| Mlp::new(&(students.root() / format!("teacher{k}") / *name), d_s, d_s, *w)).collect());
    }
    crate::distill::init::reset_like_pytorch(&students, setup.seed, "mgd.encoders")?;
    Ok(Box::new(Mgd {
        ce: cfg.loss_weights.ce,
        kd: cfg.loss_weights.kd,
        temperature: cfg.temperature,
        o: cfg.mgd.clone().unwrap_or_default(),
        heads,
        students,
        encoders,
        summary: RefCell::new(None),
    }))
}

/// T²·KL between a teacher code and a student code (batch mean), codes read as logits.
pub fn code_kl(student: &Tensor, teacher: &Tensor, t: f64) -> Tensor {
    kd_per_sample(student, teacher, t).mean(student.kind())
}

/// The stable-excitation target (z_t + z_A + z_D) / 3.
pub fn stable_target(z: &Tensor, z_a: &Tensor, z_d: &Tensor) -> Tensor {
    (z + z_a + z_d) / 3.0
}

impl Method for Mgd {
    fn losses(&self, batch: &BatchOutputs) -> anyhow::Result<Vec<LossTerm>> {
        let f_s = &batch.student_feats[0];
        let k = batch.teachers.len() as f64;
        let mut div = Tensor::zeros([], (Kind::Float, batch.student.device()));
        let mut enc = Tensor::zeros([], (Kind::Float, batch.student.device()));
        for (i, (z, heads)) in batch.teachers.iter().zip(&self.heads).enumerate() {
            let f_t = &batch.teacher_feats[i][0];
            let codes: Vec<(Tensor, Tensor)> = tch::no_grad(|| {
                heads
                    .branches
                    .iter()
                    .map(|b| {
                        let c = b.encoder.forward(f_t);
                        let z = b.decoder.forward(&c);
                        (c, z)
                    })
                    .collect()
            });
            for ((b, (code, _)), student_enc) in heads.branches.iter().zip(&codes).zip(&self.encoders[i]) {
                enc += code_kl(&student_enc.forward(f_s), code, b.temperature);
            }
            let target = match self.o.mode {
                MgdMode::Mas => stable_target(z, &codes[0].1, &codes[1].1),
                MgdMode::Mag => z.shallow_clone(),
            };
            div += kd_per_sample(batch.student, &target, self.temperature).mean(Kind::Float);
        }
        Ok(vec![ce_term(self.ce, batch), LossTerm { name: "kd", value: div / k * self.kd }, LossTerm { name: "enc", value: enc / k }])
    }

    fn teacher_weights(&self, batch: &BatchOutputs) -> anyhow::Result<Option<Tensor>> {
        let k = batch.teachers.len() as i64;
        Ok(Some(Tensor::full([k], 1.0 / k as f64, (Kind::Float, batch.student.device()))))
    }

    fn modules(&self) -> Option<&nn::VarStore> {
        Some(&self.students)
    }

    /// Stage 1: each teacher's self-analyzing module on its pooled features.
    fn prepare(&self, ctx: &PrepareContext) -> anyhow::Result<()> {
        // Data parallel: rank 0 trains the heads; the trainer gives every rank rank 0's method
        // state (the heads included) before the first step.
        if ctx.dist.is_some_and(|g| g.rank != 0) {
            return Ok(());
        }
        let mut report = Vec::new();
        for (k, (teacher, heads)) in ctx.teachers.iter().zip(&self.heads).enumerate() {
            let pooled = teacher
                .taps
                .iter()
                .position(|t| t == "pooled")
                .ok_or_else(|| anyhow::anyhow!("teacher `{}` was loaded without its pooled tap", teacher.name))?;
            // The teacher's pooled features and logits on batches of uint8 images.
            let run = |batches: &mut dyn Iterator<Item = anyhow::Result<(Tensor, Tensor)>>| -> anyhow::Result<Features> {
                let (mut fs, mut zs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
                for batch in batches {
                    let (images, labels) = batch?;
                    let (z, taps) = teacher.forward(&images)?;
                    fs.push(taps[pooled].to_device(ctx.device));
                    zs.push(z.to_device(ctx.device));
                    ys.push(labels.to_device(ctx.device));
                }
                Ok(Features { pooled: Tensor::cat(&fs, 0), logits: Tensor::cat(&zs, 0), labels: Tensor::cat(&ys, 0) })
            };
            // The test set at the teacher's size, as it is; the training set augmented, each pass
            // with its own seeds.
            let size = teacher.input_hw;
            let test_set = ctx.test.at(size)?;
            let n = test_set.len() as i64;
            let mut chunks = (0..n).step_by(256).map(|start| {
                let len = 256.min(n - start);
                Ok((test_set.images.narrow(0, start, len), test_set.labels.narrow(0, start, len)))
            });
            let test = run(&mut chunks)?;
            let seed = ctx.seed.wrapping_add(k as u64);
            let mut augment_rng = Rng::new(seed ^ 0x6d67_6461_7567);
            let order: Vec<usize> = (0..ctx.train.len()).collect();
            let mut pass = |_: usize, _: usize| {
                let batches: Vec<Vec<usize>> = order.chunks(256).map(|c| c.to_vec()).collect();
                let seeds = batches.iter().map(|_| augment_rng.next_u64()).collect();
                ctx.train
                    .train_batches(&Schedule { batches, seeds }, &[size], |stream| run(&mut stream.map(|b| b.map(|mut b| (b.views.swap_remove(0), b.labels)))))
            };
            let acc = heads.train(&mut pass, &test, self.o.head_epochs, ctx.batch_size, seed)?;
            eprintln!("mgd: teacher `{}` self-analyzing branches: A {:.2}%, D {:.2}% test top-1", teacher.name, 100.0 * acc[0], 100.0 * acc[1]);
            report.push(serde_json::json!({"teacher": teacher.name, "branch_a_top1": acc[0], "branch_d_top1": acc[1], "epochs": self.o.head_epochs}));
        }
        *self.summary.borrow_mut() = Some(serde_json::json!({"self_analyzing": report}));
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = Vec::new();
        for (k, h) in self.heads.iter().enumerate() {
            let mut vars: Vec<(String, Tensor)> = h.vs.variables().into_iter().map(|(n, t)| (format!("heads.teacher{k}.{n}"), t)).collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            s.extend(vars);
        }
        s
    }

    fn summary(&self) -> Option<serde_json::Value> {
        self.summary.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::golden::case;

    #[test]
    fn code_and_logit_terms_match_pytorch() {
        let c = case("mgd");
        c.check("l_enc_a", &code_kl(&c.input("enc_a_student"), &c.input("enc_a_teacher"), c.param("T_A")), 1e-5);
        c.check("l_enc_d", &code_kl(&c.input("enc_d_student"), &c.input("enc_d_teacher"), c.param("T_D")), 1e-5);
        let z_bar = stable_target(&c.input("teacher"), &c.input("teacher_a"), &c.input("teacher_d"));
        c.check("z_bar", &z_bar, 1e-5);
        let s = c.input("student");
        c.check("mas_kd", &kd_per_sample(&s, &z_bar, c.param("T")).mean(Kind::Float), 1e-5);
        c.check("mag_kd", &kd_per_sample(&s, &c.input("teacher"), c.param("T")).mean(Kind::Float), 1e-5);
    }
}
