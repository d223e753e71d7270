//! SGD with momentum, Nesterov and coupled weight decay, written out (as torch.optim.SGD
//! computes it) so its momentum buffers can be checkpointed; libtorch's optimizer behind tch
//! keeps them out of reach, and a resumed run must continue bit for bit.
//!
//! Per parameter p with gradient g: d = g + wd·p; buf = d on the first step, else
//! buf = momentum·buf + d; d = d + momentum·buf (Nesterov) or d = buf; p ← p − lr·d.
//!
//! The parameters are views of one flat tensor per (dtype, device), and their gradients views of
//! another (adopted after the first backward; autograd then accumulates into them in place), so
//! a step is a handful of kernels on whole buffers, not several per parameter. The momentum
//! buffer starts at zero, which makes momentum·0 + d the first step's d exactly. A parameter
//! without a gradient in a step is skipped, as torch.optim.SGD skips it: the step runs over the
//! contiguous runs of parameters that have one.

use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

pub struct Sgd {
    members: Vec<Member>,
    groups: Vec<Group>,
    pub lr: f64,
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
}

/// One parameter: where it sits in its group's buffers.
struct Member {
    name: String,
    param: Tensor,
    group: usize,
    offset: i64,
    numel: i64,
    shape: Vec<i64>,
    /// Its strides, kept in the buffers: a channels-last weight stays channels-last.
    strides: Vec<i64>,
    /// Whether weight decay applies (not to quantization step sizes).
    decays: bool,
    /// A factor on its gradient (LSQ's step-size gradient scale; 1 otherwise).
    grad_scale: f64,
    /// Whether its momentum buffer holds a step (what a checkpoint saves).
    started: bool,
}

impl Member {
    /// This parameter's place in a group buffer `flat` (a fresh allocation, offset 0), with its
    /// shape and strides.
    fn view(&self, flat: &Tensor) -> Tensor {
        flat.as_strided(self.shape.as_slice(), self.strides.as_slice(), self.offset)
    }
}

/// Strides that lay `t` out densely in the order of its own strides (a channels-last weight
/// stays channels-last); row-major strides when its layout is not dense.
fn dense_strides(t: &Tensor) -> Vec<i64> {
    let (size, stride) = (t.size(), t.stride());
    let mut order: Vec<usize> = (0..size.len()).collect();
    // Innermost first: smallest stride, later dimension on ties.
    order.sort_by(|&a, &b| stride[a].cmp(&stride[b]).then(b.cmp(&a)));
    let mut dense = vec![0i64; size.len()];
    let mut step = 1;
    for &d in &order {
        dense[d] = step;
        step *= size[d].max(1);
    }
    let same = (0..size.len()).all(|d| size[d] == 1 || dense[d] == stride[d]);
    if same {
        dense
    } else {
        let mut rows = vec![0i64; size.len()];
        let mut step = 1;
        for d in (0..size.len()).rev() {
            rows[d] = step;
            step *= size[d].max(1);
        }
        rows
    }
}

/// The flat buffers of the parameters of one dtype and device, in parameter order.
struct Group {
    params: Tensor,
    grads: Tensor,
    momentum: Tensor,
    /// Per element: the weight decay, when some members take none (else the scalar applies).
    decay: Option<Tensor>,
    /// Per element: the gradient factor, when some member's is not 1.
    scale: Option<Tensor>,
    members: Vec<usize>,
}

impl Sgd {
    /// `params` are (name, tensor with requires_grad) pairs; names key the checkpointed buffers.
    /// Each tensor becomes a view of its group's flat buffer (the caller's handles, and the
    /// graph's, share it). Learned quantization steps (`….quant.scale`) take no weight decay,
    /// which would only shrink the quantization range (the usual QAT practice).
    pub fn new(params: Vec<(String, Tensor)>, lr: f64, momentum: f64, weight_decay: f64, nesterov: bool) -> Sgd {
        let _guard = tch::no_grad_guard();
        let mut keys: Vec<(Kind, Device)> = Vec::new();
        let mut members = Vec::with_capacity(params.len());
        for (name, param) in params {
            let key = (param.kind(), param.device());
            let group = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                keys.push(key);
                keys.len() - 1
            });
            let decays = !name.ends_with(".quant.scale");
            let strides = dense_strides(&param);
            members.push(Member {
                name,
                shape: param.size(),
                strides,
                numel: param.numel() as i64,
                param,
                group,
                offset: 0,
                decays,
                grad_scale: 1.0,
                started: false,
            });
        }
        let mut groups = Vec::with_capacity(keys.len());
        for (g, &(kind, device)) in keys.iter().enumerate() {
            let ids: Vec<usize> = (0..members.len()).filter(|&i| members[i].group == g).collect();
            let mut offset = 0;
            for &i in &ids {
                members[i].offset = offset;
                offset += members[i].numel;
            }
            let flat = Tensor::zeros([offset], (kind, device));
            for &i in &ids {
                let m = &mut members[i];
                let mut view = m.view(&flat);
                view.copy_(&m.param.detach());
                let _ = m.param.set_source_tensor_(&view);
            }
            let decay = (weight_decay != 0.0 && ids.iter().any(|&i| !members[i].decays)).then(|| {
                let parts: Vec<Tensor> =
                    ids.iter().map(|&i| Tensor::full([members[i].numel], if members[i].decays { weight_decay } else { 0.0 }, (kind, device))).collect();
                Tensor::cat(&parts, 0)
            });
            groups.push(Group { grads: flat.zeros_like(), momentum: flat.zeros_like(), params: flat, decay, scale: None, members: ids });
        }
        Sgd { members, groups, lr, momentum, weight_decay, nesterov }
    }

    /// Multiplies the gradients of the named parameters by the given factors before each step.
    /// For a learned quantization step this is LSQ's gradient scale g = 1/√(N·Q_P): scaling
    /// the step's gradient alone is what LSQ's `grad_scale` in the forward pass does.
    pub fn with_grad_scales(mut self, scales: &HashMap<String, f64>) -> Sgd {
        for m in self.members.iter_mut() {
            if let Some(f) = scales.get(&m.name) {
                m.grad_scale = *f;
            }
        }
        for g in self.groups.iter_mut() {
            g.scale = g.members.iter().any(|&i| self.members[i].grad_scale != 1.0).then(|| {
                let (kind, device) = (g.params.kind(), g.params.device());
                Tensor::cat(
                    &g.members.iter().map(|&i| Tensor::full([self.members[i].numel], self.members[i].grad_scale, (kind, device))).collect::<Vec<_>>(),
                    0,
                )
            });
        }
        self
    }

    /// Zeroes every gradient: one kernel per group once the gradients are views of its buffer.
    pub fn zero_grad(&mut self) {
        let _guard = tch::no_grad_guard();
        for m in &self.members {
            let mut g = m.param.grad();
            if g.defined() && !self.is_adopted(m, &g) {
                let _ = g.zero_();
            }
        }
        for g in self.groups.iter_mut() {
            let _ = g.grads.zero_();
        }
    }

    /// Whether `grad` is member `m`'s view of its group's gradient buffer.
    fn is_adopted(&self, m: &Member, grad: &Tensor) -> bool {
        let group = &self.groups[m.group].grads;
        grad.data_ptr() as usize == group.data_ptr() as usize + (m.offset as usize) * group.kind().elt_size_in_bytes()
    }

    pub fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        for (g, runs) in self.adopt_grads().into_iter().enumerate() {
            for (start, len) in runs {
                self.step_range(g, start, len);
            }
        }
    }

    /// Averages the gradients across the ranks of a data-parallel run: one allreduce of each
    /// group's flat gradient buffer (one in all for a float32 model on one device). Every
    /// rank then takes the same step from the same parameters, so they stay equal.
    pub fn average_grads(&mut self, group: &crate::dist::Group) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        self.adopt_grads();
        for g in &self.groups {
            group.allreduce_mean(&[&g.grads])?;
        }
        Ok(())
    }

    /// Gives every rank rank `root`'s parameters and momentum (which buffers hold a step
    /// included): what a resumed data-parallel run does after rank 0 read its checkpoint.
    pub fn broadcast_state(&mut self, group: &crate::dist::Group, root: usize) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        for g in &self.groups {
            group.broadcast(&g.params, root)?;
            group.broadcast(&g.momentum, root)?;
        }
        let started = Tensor::from_slice(&self.members.iter().map(|m| m.started as u8).collect::<Vec<_>>());
        group.broadcast(&started, root)?;
        let flags = crate::host::vec::<u8>(&started)?;
        for (m, f) in self.members.iter_mut().zip(flags) {
            m.started = f != 0;
        }
        Ok(())
    }

    /// Makes every gradient autograd allocated a view of its group's buffer (copying it there,
    /// so the next backward accumulates in place), and returns per group the runs of
    /// consecutive members that have a gradient this step, as element ranges.
    fn adopt_grads(&mut self) -> Vec<Vec<(i64, i64)>> {
        let mut all = Vec::with_capacity(self.groups.len());
        for g in 0..self.groups.len() {
            let mut runs: Vec<(i64, i64)> = Vec::new();
            for &i in &self.groups[g].members {
                let m = &self.members[i];
                let mut grad = m.param.grad();
                if !grad.defined() {
                    continue;
                }
                if !self.is_adopted(m, &grad) {
                    let mut view = m.view(&self.groups[g].grads);
                    view.copy_(&grad);
                    let _ = grad.set_source_tensor_(&view);
                }
                match runs.last_mut() {
                    Some((start, len)) if *start + *len == m.offset => *len += m.numel,
                    _ => runs.push((m.offset, m.numel)),
                }
                self.members[i].started = true;
            }
            all.push(runs);
        }
        all
    }

    /// The update on elements `start..start + len` of group `g`'s buffers.
    fn step_range(&self, g: usize, start: i64, len: i64) {
        let group = &self.groups[g];
        let whole = start == 0 && len == group.params.numel() as i64;
        let part = |t: &Tensor| if whole { t.shallow_clone() } else { t.narrow(0, start, len) };
        let mut p = part(&group.params);
        let grad = part(&group.grads);
        let grad = match &group.scale {
            Some(s) => grad * part(s),
            None => grad,
        };
        let mut d = match &group.decay {
            Some(wd) => grad + &p * part(wd),
            None if self.weight_decay != 0.0 => grad + &p * self.weight_decay,
            None => grad,
        };
        if self.momentum != 0.0 {
            let mut buf = part(&group.momentum);
            let _ = buf.g_mul_scalar_(self.momentum);
            let _ = buf.g_add_(&d);
            d = if self.nesterov { d + &buf * self.momentum } else { buf };
        }
        let _ = p.g_sub_(&(d * self.lr));
    }

    /// The flat parameter buffers (one per dtype and device), which every parameter views.
    pub fn flat_params(&self) -> Vec<&Tensor> {
        self.groups.iter().map(|g| &g.params).collect()
    }

    /// The parameters' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// Momentum buffers by parameter name (absent before a parameter's first step).
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.members.iter().filter(|m| m.started && self.momentum != 0.0).map(|m| (m.name.clone(), m.view(&self.groups[m.group].momentum))).collect()
    }

    /// Restores momentum buffers saved by [`Sgd::buffers`]; a parameter without one starts
    /// afresh.
    pub fn load_buffers(&mut self, saved: &HashMap<String, Tensor>) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        for m in self.members.iter_mut() {
            let mut view = m.view(&self.groups[m.group].momentum);
            match saved.get(&m.name) {
                Some(t) => {
                    if t.numel() as i64 != m.numel {
                        anyhow::bail!("the momentum buffer of `{}` holds {} values, the parameter {}", m.name, t.numel(), m.numel);
                    }
                    view.f_copy_(&t.reshape(m.shape.as_slice()))?;
                    m.started = true;
                }
                None => {
                    let _ = view.zero_();
                    m.started = false;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostRead;
    use tch::nn::OptimizerConfig;

    /// Ten steps of torch.optim.SGD (`sgd_nesterov` in the golden fixtures: Nesterov, weight
    /// decay on two parameters and none on a quantization step, the learning rate changing
    /// every step, one parameter without a gradient) are reproduced within 1e-6 relative in the
    /// parameters. torch's foreach kernels compute `a + α·b` as one fused multiply-add where
    /// this SGD rounds twice, so the momentum buffers, sums of ten such steps, agree to a few
    /// units in the last place (measured 2.2e-6 relative; checked at 1e-5).
    #[test]
    fn matches_torch_optim_sgd_over_ten_steps() {
        let case = crate::distill::golden::case("sgd_nesterov");
        let names = ["w", "v", "s", "unused"];
        let params: Vec<(String, Tensor)> = names
            .iter()
            .map(|n| {
                let name = if *n == "s" { "conv.quant.scale".to_string() } else { n.to_string() };
                (name, case.input(&format!("start_{n}")).set_requires_grad(true))
            })
            .collect();
        let handles: Vec<Tensor> = params.iter().map(|(_, t)| t.shallow_clone()).collect();
        let mut opt = Sgd::new(params, 0.0, case.param("momentum"), case.param("weight_decay"), true);
        let lrs = crate::host::vec::<f64>(&case.input("lrs").to_kind(Kind::Double)).unwrap();
        assert_eq!(lrs.len(), case.param("steps") as usize);
        for lr in lrs {
            opt.lr = lr;
            opt.zero_grad();
            let loss = names[..3]
                .iter()
                .zip(&handles)
                .map(|(n, p)| (case.input(&format!("coef_{n}")) * 0.5 * p * p + case.input(&format!("shift_{n}")) * p).sum(Kind::Float))
                .reduce(|a, b| a + b)
                .unwrap();
            loss.backward();
            opt.step();
        }
        let relative = |got: &Tensor, want: &Tensor| ((got.detach().to_kind(Kind::Double) - want).abs() / want.abs().clamp_min(1e-3)).max().read_f64();
        for (n, p) in names.iter().zip(&handles) {
            let err = relative(p, &case.expected(n));
            assert!(err < 1e-6, "{n}: {err:.2e}");
        }
        let buffers: HashMap<String, Tensor> = opt.buffers().into_iter().collect();
        assert!(!buffers.contains_key("unused"), "a parameter that never had a gradient has no buffer");
        for (n, key) in [("w", "w"), ("v", "v"), ("s", "conv.quant.scale")] {
            let err = relative(&buffers[key], &case.expected(&format!("momentum_{n}")));
            assert!(err < 1e-5, "momentum {n}: {err:.2e}");
        }
    }

    /// A channels-last weight keeps its layout as a view of the buffer, its gradient is adopted
    /// with the same layout, and its checkpointed momentum reads back in logical order.
    #[test]
    fn channels_last_parameters_keep_their_layout() {
        let logical = Tensor::from_slice(&(0..24).map(|v| v as f32 / 10.0).collect::<Vec<_>>()).reshape([2, 3, 2, 2]);
        let cl = logical.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]).set_requires_grad(true);
        let plain = logical.copy().set_requires_grad(true);
        let mut a = Sgd::new(vec![("w".into(), cl.shallow_clone())], 0.1, 0.9, 1e-2, true);
        let mut b = Sgd::new(vec![("w".into(), plain.shallow_clone())], 0.1, 0.9, 1e-2, true);
        assert_eq!(cl.stride(), vec![12, 1, 6, 3], "still channels-last");
        let weights = Tensor::from_slice(&(0..24).map(|v| (v % 5) as f32 - 2.0).collect::<Vec<_>>()).reshape([2, 3, 2, 2]);
        for _ in 0..3 {
            for (opt, p) in [(&mut a, &cl), (&mut b, &plain)] {
                opt.zero_grad();
                (p * p * &weights).sum(Kind::Float).backward();
                opt.step();
            }
        }
        assert_eq!(cl.stride(), vec![12, 1, 6, 3]);
        assert!(cl.detach().allclose(&plain.detach(), 1e-6, 1e-7, false), "the same updates in either layout");
        let saved: HashMap<String, Tensor> = a.buffers().into_iter().map(|(n, t)| (n, t.contiguous())).collect();
        let want = b.buffers().remove(0).1;
        assert!(saved["w"].allclose(&want, 1e-6, 1e-7, false));
        let mut c =
            Sgd::new(vec![("w".into(), logical.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]).set_requires_grad(true))], 0.1, 0.9, 1e-2, true);
        c.load_buffers(&saved).unwrap();
        assert!(c.buffers().remove(0).1.allclose(&want, 1e-6, 1e-7, false), "restored in logical order");
    }

    /// The step is a few kernels on flat buffers: every parameter and every gradient is a view
    /// of its group's buffer after the first step, and a checkpoint's buffers restore exactly.
    #[test]
    fn parameters_and_gradients_live_in_one_buffer() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]).set_requires_grad(true);
        let b = Tensor::from_slice(&[5.0f32, 6.0]).set_requires_grad(true);
        let mut opt = Sgd::new(vec![("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())], 0.1, 0.9, 0.0, false);
        let base = opt.groups[0].params.data_ptr() as usize;
        assert_eq!(a.data_ptr() as usize, base);
        assert_eq!(b.data_ptr() as usize, base + 4 * 4);
        for _ in 0..2 {
            opt.zero_grad();
            ((&a * &a).sum(Kind::Float) + (&b * 3.0).sum(Kind::Float)).backward();
            opt.step();
        }
        let grads = opt.groups[0].grads.data_ptr() as usize;
        assert_eq!(a.grad().data_ptr() as usize, grads);
        assert_eq!(b.grad().data_ptr() as usize, grads + 4 * 4);
        // The gradient buffer holds this step's gradients: 2a (before the step) and 3.
        assert_eq!(crate::host::vec::<f32>(&opt.groups[0].grads.narrow(0, 4, 2)).unwrap(), vec![3.0, 3.0]);
        let saved: HashMap<String, Tensor> = opt.buffers().into_iter().map(|(n, t)| (n, t.copy())).collect();
        let mut other = Sgd::new(
            vec![("a".into(), a.detach().copy().set_requires_grad(true)), ("b".into(), b.detach().copy().set_requires_grad(true))],
            0.1,
            0.9,
            0.0,
            false,
        );
        other.load_buffers(&saved).unwrap();
        assert!(other.groups[0].momentum.equal(&opt.groups[0].momentum));
        let wrong: HashMap<String, Tensor> = [("a".to_string(), Tensor::zeros([3], (Kind::Float, Device::Cpu)))].into();
        assert!(other.load_buffers(&wrong).unwrap_err().to_string().contains("`a`"));
    }

    /// Two steps on f(p) = ½‖p‖² by hand: g = p. With lr 0.1, momentum 0.9, wd 0.5, Nesterov:
    /// step 1: d = 1.5p0, buf = 1.5p0, d' = 1.5p0 + 1.35p0 = 2.85p0, p1 = p0 − 0.285p0 = 0.715p0.
    #[test]
    fn matches_the_hand_computed_nesterov_update() {
        let p0 = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = Sgd::new(vec![("p".into(), p0.shallow_clone())], 0.1, 0.9, 0.5, true);
        let loss = (&p0 * &p0).sum(Kind::Float) * 0.5;
        loss.backward();
        opt.step();
        let got = crate::host::vec::<f32>(&p0.detach()).unwrap();
        assert!((got[0] - 0.715).abs() < 1e-6 && (got[1] + 1.43).abs() < 1e-6, "{got:?}");
        // Second step: g = 0.715p0, d = 1.0725p0, buf = 0.9·1.5p0 + 1.0725p0 = 2.4225p0,
        // d' = 1.0725p0 + 2.18025p0 = 3.25275p0, p2 = 0.715p0 − 0.325275p0 = 0.389725p0.
        opt.zero_grad();
        let loss = (&p0 * &p0).sum(Kind::Float) * 0.5;
        loss.backward();
        opt.step();
        let got = crate::host::vec::<f32>(&p0.detach()).unwrap();
        assert!((got[0] - 0.389725).abs() < 1e-6, "{got:?}");
    }

    /// The same three steps through libtorch's own SGD (tch::nn::Sgd) give the same weights.
    #[test]
    fn agrees_with_libtorch_sgd() {
        tch::manual_seed(3);
        let init = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
        let x = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let theirs = vs.root().add("w", init.copy(), true);
        let mut reference = tch::nn::Sgd { momentum: 0.9, dampening: 0.0, wd: 5e-4, nesterov: true }.build(&vs, 0.05).unwrap();
        let ours = init.copy().set_requires_grad(true);
        let mut opt = Sgd::new(vec![("w".into(), ours.shallow_clone())], 0.05, 0.9, 5e-4, true);
        for _ in 0..3 {
            reference.zero_grad();
            x.matmul(&theirs).tanh().sum(Kind::Float).backward();
            reference.step();
            opt.zero_grad();
            x.matmul(&ours).tanh().sum(Kind::Float).backward();
            opt.step();
        }
        let diff = (ours.detach() - theirs.detach()).abs().max().read_f64();
        assert!(diff < 1e-6, "{diff}");
    }

    /// Two training steps of a zoo student (ResNet-8, BatchNorm in training mode) give the same
    /// weights with this SGD as with libtorch's, to rounding: libtorch fuses the final
    /// multiply-add, so the last bits differ, and small students amplify such differences
    /// chaotically after a few steps (measured: a 1e-7 nudge to one tensor grows to 1e-2 in
    /// three steps even between two libtorch runs; RepDistiller's MobileNetV2, whose last maps
    /// are 2×2, already diverges in the second step on random data), hence two steps.
    #[test]
    fn agrees_with_libtorch_sgd_on_a_zoo_student() {
        use crate::graph::RunMode;
        use crate::student::Student;
        let spec = crate::zoo::ArchSpec { num_classes: 10, width: 0.5, image_size: 32 };
        // One student and an exact copy, and data from the crate's own generator: tests run in
        // parallel and libtorch's global generator is shared among them.
        let a = Student::new(crate::zoo::build("resnet8", &spec, Device::Cpu).unwrap(), Device::Cpu).unwrap();
        let b = Student::new(crate::zoo::build("resnet8", &spec, Device::Cpu).unwrap(), Device::Cpu).unwrap();
        b.load_state(&a.state().into_iter().map(|(n, t)| (n, t.detach().copy())).collect()).unwrap();
        let vs = tch::nn::VarStore::new(Device::Cpu);
        for (i, (_, t)) in a.parameters().into_iter().enumerate() {
            // Register the very tensors the graph uses, so libtorch's SGD updates them in place.
            let _ = vs.root().add(&format!("p{i}"), t, true);
        }
        let mut reference = tch::nn::Sgd { momentum: 0.9, dampening: 0.0, wd: 5e-4, nesterov: true }.build(&vs, 0.05).unwrap();
        let mut ours = Sgd::new(b.parameters(), 0.05, 0.9, 5e-4, true);
        let mut rng = crate::data::rng::Rng::new(10);
        for _ in 0..2 {
            let x = Tensor::from_slice(&(0..8 * 3 * 32 * 32).map(|_| rng.normal() as f32).collect::<Vec<_>>()).reshape([8, 3, 32, 32]);
            let y = Tensor::from_slice(&(0..8).map(|_| rng.below(10) as i64).collect::<Vec<_>>());
            reference.zero_grad();
            a.forward(&x, RunMode::Train).unwrap().cross_entropy_for_logits(&y).backward();
            reference.step();
            ours.zero_grad();
            b.forward(&x, RunMode::Train).unwrap().cross_entropy_for_logits(&y).backward();
            ours.step();
        }
        for ((name, ta), (_, tb)) in a.state().iter().zip(b.state().iter()) {
            let diff = (ta.detach() - tb.detach()).abs().max().read_f64();
            assert!(diff < 1e-4, "{name}: {diff}");
        }
    }
}
