//! How much power a modelled replica draws: idle and maximum board power per card,
//! scaled by the model's utilisation (docs/capacity.md).
//!
//! `power = cards × (idle_w + (max_w − idle_w) × utilisation)`, utilisation being
//! the share of time the replica spends running steps. Maximum power is the
//! vendor's published board power (TDP) of the named form factor; vendors publish
//! no idle figure, so idle is a typical reading of an idle card holding a model,
//! stated as such in `docs/metrics-definitions.md` and overridable with `idle_w`.
//! The model is linear in busy time: a card decoding a batch of one reads as busy
//! as a full one, so at small batches it overstates the draw (real cards stay well
//! under their TDP when memory-bound).

/// One card's (or one tensor-parallel group's) board power.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerSpec {
    /// As written in scenarios (`energy: {gpu: ...}`); the GPU model's presets
    /// (`h100-80gb`, `a100-40gb`, `2xh100-80gb`) are here under their own names.
    pub name: &'static str,
    /// What the figure is for, e.g. `H100 SXM5 80GB`.
    pub form_factor: &'static str,
    /// Cards in the group (a `2x` preset is two).
    pub cards: u32,
    /// Watts per card with nothing running.
    pub idle_w: f64,
    /// Watts per card at full load: the published maximum board power.
    pub max_w: f64,
    /// Where `max_w` comes from.
    pub source: &'static str,
}

impl PowerSpec {
    /// Watts the whole group draws at `utilisation` (clamped to 0..=1).
    pub fn watts(&self, utilisation: f64) -> f64 {
        let u = if utilisation.is_finite() {
            utilisation.clamp(0.0, 1.0)
        } else {
            0.0
        };
        f64::from(self.cards) * (self.idle_w + (self.max_w - self.idle_w) * u)
    }
}

const H100_SXM: &str = "NVIDIA H100 Tensor Core GPU datasheet: H100 SXM max TDP up to 700 W";
const H100_PCIE: &str = "NVIDIA H100 Tensor Core GPU datasheet: H100 PCIe max TDP 350 W";
const A100_SXM: &str = "NVIDIA A100 Tensor Core GPU datasheet: A100 SXM max TDP 400 W";
const A100_PCIE_40: &str = "NVIDIA A100 Tensor Core GPU datasheet: A100 40GB PCIe max TDP 250 W";
const A100_PCIE_80: &str = "NVIDIA A100 Tensor Core GPU datasheet: A100 80GB PCIe max TDP 300 W";
const L4: &str = "NVIDIA L4 Tensor Core GPU datasheet: max thermal design power 72 W";

/// Power presets: every card of the GPU model, plus common form factors the
/// model has no timing preset for (a scenario may price energy for them with
/// `{idle_w, max_w}`-like precision without a matching `gpu_saturation`).
pub const POWER: &[PowerSpec] = &[
    PowerSpec {
        name: "h100-80gb",
        form_factor: "H100 SXM5 80GB",
        cards: 1,
        idle_w: 70.0,
        max_w: 700.0,
        source: H100_SXM,
    },
    PowerSpec {
        name: "2xh100-80gb",
        form_factor: "2 × H100 SXM5 80GB",
        cards: 2,
        idle_w: 70.0,
        max_w: 700.0,
        source: H100_SXM,
    },
    PowerSpec {
        name: "a100-40gb",
        form_factor: "A100 SXM4 40GB",
        cards: 1,
        idle_w: 50.0,
        max_w: 400.0,
        source: A100_SXM,
    },
    PowerSpec {
        name: "h100-pcie-80gb",
        form_factor: "H100 PCIe 80GB",
        cards: 1,
        idle_w: 50.0,
        max_w: 350.0,
        source: H100_PCIE,
    },
    PowerSpec {
        name: "a100-80gb",
        form_factor: "A100 SXM4 80GB",
        cards: 1,
        idle_w: 50.0,
        max_w: 400.0,
        source: A100_SXM,
    },
    PowerSpec {
        name: "a100-pcie-40gb",
        form_factor: "A100 PCIe 40GB",
        cards: 1,
        idle_w: 35.0,
        max_w: 250.0,
        source: A100_PCIE_40,
    },
    PowerSpec {
        name: "a100-pcie-80gb",
        form_factor: "A100 PCIe 80GB",
        cards: 1,
        idle_w: 40.0,
        max_w: 300.0,
        source: A100_PCIE_80,
    },
    PowerSpec {
        name: "l4",
        form_factor: "L4 24GB PCIe",
        cards: 1,
        idle_w: 16.0,
        max_w: 72.0,
        source: L4,
    },
];

/// Looks a power preset up by name.
pub fn power_spec(name: &str) -> Option<&'static PowerSpec> {
    POWER.iter().find(|p| p.name == name)
}

/// The names of every power preset, for "unknown preset" messages.
pub fn power_names() -> String {
    POWER.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gpu_model_card_has_a_power_preset() {
        for g in super::super::GPUS {
            let p = power_spec(g.name).unwrap_or_else(|| panic!("{} has no power", g.name));
            assert!(p.idle_w > 0.0 && p.idle_w < p.max_w, "{p:?}");
        }
    }

    #[test]
    fn power_scales_linearly_with_utilisation() {
        let h = power_spec("h100-80gb").unwrap();
        assert_eq!(h.watts(0.0), 70.0);
        assert_eq!(h.watts(1.0), 700.0);
        assert_eq!(h.watts(0.5), 385.0);
        // Out-of-range readings cannot make a card draw more than its board power.
        assert_eq!(h.watts(3.0), 700.0);
        assert_eq!(h.watts(f64::NAN), 70.0);
        let two = power_spec("2xh100-80gb").unwrap();
        assert_eq!(two.watts(1.0), 1400.0);
        assert_eq!(power_spec("h100-pcie-80gb").unwrap().max_w, 350.0);
        assert_eq!(power_spec("a100-40gb").unwrap().max_w, 400.0);
    }
}
