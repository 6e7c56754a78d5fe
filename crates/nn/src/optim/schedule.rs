//! Learning-rate schedules: a value of the learning rate for every optimizer step.
//!
//! A [`Schedule`] is a small tree of pieces that compose: [`Schedule::Warmup`] ramps linearly
//! into any other schedule, [`Schedule::Then`] switches from one schedule to another after a
//! number of steps, and [`Schedule::Scaled`] multiplies one by a constant. SimCLR's recipe is
//! `Schedule::warmup_cosine(base, warmup_steps, total_steps)`: a linear warm-up for the first
//! steps, then cosine decay to zero over the rest. Steps count from 0; call
//! [`Schedule::apply`] before each `optimizer.step()`. Schedules are serde-serialisable so
//! they can be stored in a run's configuration.

use serde::{Deserialize, Serialize};

use super::Optimizer;

/// A learning rate as a function of the step index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The same rate at every step.
    Constant(f32),
    /// From `from` at step 0 to `to` at step `steps`, linearly; `to` afterwards.
    Linear {
        /// Rate at step 0.
        from: f32,
        /// Rate from step `steps` on.
        to: f32,
        /// Length of the ramp.
        steps: usize,
    },
    /// Cosine decay from `base` at step 0 to `min` at step `steps` (and after):
    /// `min + (base − min)·(1 + cos(π·t/steps))/2`.
    Cosine {
        /// Rate at step 0.
        base: f32,
        /// Rate from step `steps` on.
        min: f32,
        /// Length of the decay.
        steps: usize,
    },
    /// Linear warm-up over `steps` steps, reaching the start of `then`: step `t < steps` uses
    /// `then.lr_at(0)·(t + 1)/steps`; step `t ≥ steps` uses `then.lr_at(t − steps)`.
    Warmup {
        /// Length of the warm-up.
        steps: usize,
        /// The schedule that follows (its step 0 is the first step after the warm-up).
        then: Box<Schedule>,
    },
    /// `first` for `steps` steps, then `second` (restarted at its step 0).
    Then {
        /// The first schedule.
        first: Box<Schedule>,
        /// How many steps the first schedule lasts.
        steps: usize,
        /// The schedule after the switch.
        second: Box<Schedule>,
    },
    /// `factor` times another schedule (e.g. SimCLR's `lr = 0.3 × batch/256`).
    Scaled {
        /// The multiplier.
        factor: f32,
        /// The schedule it multiplies.
        inner: Box<Schedule>,
    },
}

impl Schedule {
    /// The learning rate to use at step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f32 {
        match self {
            Schedule::Constant(lr) => *lr,
            Schedule::Linear { from, to, steps } => {
                if step >= *steps {
                    *to
                } else {
                    let f = step as f64 / *steps as f64;
                    (*from as f64 + (*to as f64 - *from as f64) * f) as f32
                }
            }
            Schedule::Cosine { base, min, steps } => {
                if step >= *steps {
                    *min
                } else {
                    let c =
                        0.5 * (1.0 + (std::f64::consts::PI * step as f64 / *steps as f64).cos());
                    (*min as f64 + (*base as f64 - *min as f64) * c) as f32
                }
            }
            Schedule::Warmup { steps, then } => {
                if step < *steps {
                    (then.lr_at(0) as f64 * (step + 1) as f64 / *steps as f64) as f32
                } else {
                    then.lr_at(step - steps)
                }
            }
            Schedule::Then {
                first,
                steps,
                second,
            } => {
                if step < *steps {
                    first.lr_at(step)
                } else {
                    second.lr_at(step - steps)
                }
            }
            Schedule::Scaled { factor, inner } => factor * inner.lr_at(step),
        }
    }

    /// Linear warm-up for `warmup_steps`, then cosine decay to 0 so that the last of
    /// `total_steps` steps is the end of the decay (SimCLR's schedule).
    pub fn warmup_cosine(base: f32, warmup_steps: usize, total_steps: usize) -> Schedule {
        Schedule::Warmup {
            steps: warmup_steps,
            then: Box::new(Schedule::Cosine {
                base,
                min: 0.0,
                steps: total_steps.saturating_sub(warmup_steps),
            }),
        }
    }

    /// Sets the optimizer's learning rate for step `step`; returns that rate.
    pub fn apply(&self, optimizer: &mut dyn Optimizer, step: usize) -> f32 {
        let lr = self.lr_at(step);
        optimizer.set_lr(lr);
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_and_composition() {
        assert_eq!(Schedule::Constant(0.1).lr_at(1000), 0.1);
        let lin = Schedule::Linear {
            from: 0.0,
            to: 1.0,
            steps: 4,
        };
        assert_eq!(
            (0..6).map(|s| lin.lr_at(s)).collect::<Vec<_>>(),
            [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
        );
        let cos = Schedule::Cosine {
            base: 1.0,
            min: 0.0,
            steps: 2,
        };
        assert_eq!(cos.lr_at(0), 1.0);
        assert!((cos.lr_at(1) - 0.5).abs() < 1e-7);
        assert_eq!(cos.lr_at(2), 0.0);
        let s = Schedule::warmup_cosine(0.4, 4, 14);
        assert_eq!(
            (0..4).map(|t| s.lr_at(t)).collect::<Vec<_>>(),
            [0.1, 0.2, 0.3, 0.4]
        );
        assert_eq!(s.lr_at(4), 0.4);
        assert!((s.lr_at(9) - 0.2).abs() < 1e-6);
        assert_eq!(s.lr_at(14), 0.0);
        let chained = Schedule::Scaled {
            factor: 2.0,
            inner: Box::new(Schedule::Then {
                first: Box::new(Schedule::Constant(1.0)),
                steps: 3,
                second: Box::new(Schedule::Constant(0.1)),
            }),
        };
        assert_eq!(chained.lr_at(2), 2.0);
        assert_eq!(chained.lr_at(3), 0.2);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), s);
    }
}
