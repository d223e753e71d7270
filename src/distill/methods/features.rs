//! The feature level shared by FitNets, FitNet-MKD, CA-MKD and DE-MKD (methods.md §1.3): for
//! each (student tap, teacher tap) pair, one connector per teacher maps the student's map onto
//! that teacher's; `Embed` connectors first align the student map to the teacher's size. A
//! vector tap (`pooled`, [B, D]) takes part as a 1×1 map [B, D, 1, 1], so a feature term can sit
//! on the vectors a teacher's classifier reads when its last map is not simply pooled into it.

use super::{feature_pairs, needs, BatchOutputs, Setup};
use crate::bad_input;
use crate::distill::connectors::{align_ca_mkd, Connector, ConnectorKind};
use crate::recipe::schema::Distill;
use tch::{nn, Tensor};

struct Pair {
    student: usize,
    teacher: usize,
    kind: ConnectorKind,
    /// One per teacher.
    connectors: Vec<Connector>,
    /// Per teacher, the spatial size of its map.
    teacher_hw: Vec<[i64; 2]>,
    /// Per teacher, the channels of its map.
    teacher_c: Vec<i64>,
}

pub struct FeatureLevel {
    pub vs: nn::VarStore,
    pairs: Vec<Pair>,
}

/// A pair's projected student map and the teacher's map, for one teacher.
pub struct Projected {
    pub student: Tensor,
    pub teacher: Tensor,
}

fn map_shape(shape: &[i64], what: &str) -> anyhow::Result<[i64; 3]> {
    match shape {
        [_, c, h, w] => Ok([*c, *h, *w]),
        [_, d] => Ok([*d, 1, 1]),
        other => Err(bad_input!("{what} is not a feature map [batch, C, H, W] (shape {other:?}); feature pairs need maps")),
    }
}

/// A vector tap [B, D] as the map [B, D, 1, 1]; a map unchanged (pairs join two of a kind).
fn as_map(t: &Tensor) -> Tensor {
    if t.dim() == 2 {
        t.unsqueeze(-1).unsqueeze(-1)
    } else {
        t.shallow_clone()
    }
}

impl FeatureLevel {
    /// The connectors of the recipe's feature pairs, or None when the feature term is off.
    pub fn new(cfg: &Distill, setup: &Setup) -> anyhow::Result<Option<FeatureLevel>> {
        let pairs = feature_pairs(cfg)?;
        if pairs.is_empty() {
            return Ok(None);
        }
        let needs = needs(cfg)?;
        let vs = nn::VarStore::new(setup.device);
        let mut built = Vec::new();
        for (i, p) in pairs.iter().enumerate() {
            let kind = p.connector.expect("feature_pairs fills the connector");
            let s_idx = needs.student_taps.iter().position(|t| *t == p.student).expect("listed in needs");
            let t_idx = needs.teacher_taps.iter().position(|t| *t == p.teacher).expect("listed in needs");
            let [sc, sh, sw] = map_shape(&setup.student_shapes[s_idx], &format!("distill.features.{i}: student tap `{}`", p.student))?;
            let mut connectors = Vec::new();
            let mut teacher_hw = Vec::new();
            let mut teacher_c = Vec::new();
            for k in 0..setup.teachers {
                let t_shape = &setup.teacher_shapes[k][t_idx];
                if (t_shape.len() == 2) != (setup.student_shapes[s_idx].len() == 2) {
                    let (vector, map) = if t_shape.len() == 2 {
                        (format!("teacher {k}'s tap `{}`", p.teacher), format!("student tap `{}`", p.student))
                    } else {
                        (format!("student tap `{}`", p.student), format!("teacher {k}'s tap `{}`", p.teacher))
                    };
                    return Err(bad_input!("distill.features.{i}: {vector} is a vector but {map} is a feature map; a pair joins two maps or two vectors"));
                }
                let t = map_shape(t_shape, &format!("distill.features.{i}: teacher {k}'s tap `{}`", p.teacher))?;
                // Embed connectors see the student map already resized to the teacher's.
                let student = if kind == ConnectorKind::ConvReg { [sc, sh, sw] } else { [sc, t[1], t[2]] };
                let path = vs.root() / format!("pair{i}") / format!("teacher{k}");
                connectors.push(Connector::new(&path, kind, &student, &t)?);
                teacher_hw.push([t[1], t[2]]);
                teacher_c.push(t[0]);
            }
            built.push(Pair { student: s_idx, teacher: t_idx, kind, connectors, teacher_hw, teacher_c });
        }
        crate::distill::init::reset_like_pytorch(&vs, setup.seed, "connectors")?;
        Ok(Some(FeatureLevel { vs, pairs: built }))
    }

    /// Channels of teacher `k`'s map in each pair.
    pub fn teacher_channels(&self, k: usize) -> Vec<i64> {
        self.pairs.iter().map(|p| p.teacher_c[k]).collect()
    }

    /// For each pair, per teacher, the projected student map and the teacher's map: `Embed`
    /// connectors see the student map resized to the teacher's (CA-MKD's alignment), `ConvReg`
    /// resizes by itself.
    pub fn project(&self, batch: &BatchOutputs) -> Vec<Vec<Projected>> {
        self.project_with(batch, |p, s, t, k| {
            let s = if p.kind == ConnectorKind::ConvReg { s.shallow_clone() } else { align_ca_mkd(s, p.teacher_hw[k]) };
            (s, t.shallow_clone())
        })
    }

    /// MMKD's variant (methods.md §1.3): the larger of the two maps is pooled to the smaller
    /// one's size, then the student's is embedded.
    pub fn project_mmkd(&self, batch: &BatchOutputs) -> Vec<Vec<Projected>> {
        self.project_with(batch, |_, s, t, _| crate::distill::connectors::align_mmkd(s, t))
    }

    /// Aligns each (student map, teacher map) with `align`, then runs the teacher's connector.
    fn project_with(&self, batch: &BatchOutputs, align: impl Fn(&Pair, &Tensor, &Tensor, usize) -> (Tensor, Tensor)) -> Vec<Vec<Projected>> {
        self.pairs
            .iter()
            .map(|p| {
                let s = as_map(&batch.student_feats[p.student]);
                (0..p.connectors.len())
                    .map(|k| {
                        let (s, t) = align(p, &s, &as_map(&batch.teacher_feats[k][p.teacher]), k);
                        Projected { student: p.connectors[k].forward(&s, true), teacher: t }
                    })
                    .collect()
            })
            .collect()
    }
}
