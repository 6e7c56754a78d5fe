//! batch_norm2d: gradchecks in training and eval mode, values and running statistics against
//! PyTorch, and shape errors.

use rand::{rngs::StdRng, SeedableRng};
use simclr_tensor::{gradcheck, gradcheck_with, BatchNormStats, GradcheckOptions, Tensor};

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::uniform(shape, -1.0, 1.0, &mut StdRng::seed_from_u64(seed))
}

#[test]
fn gradcheck_training_mode() {
    let (rm, rv) = (Tensor::zeros(&[3]), Tensor::ones(&[3]));
    let inputs = [
        rand(&[4, 3, 3, 3], 1),
        rand(&[3], 2).add_scalar(1.5),
        rand(&[3], 3),
    ];
    // The batch statistics make every output depend on every input of its channel; a smaller
    // step keeps the second-order terms of the normalisation inside the tolerance.
    let opts = GradcheckOptions {
        step: 5e-3,
        ..GradcheckOptions::default()
    };
    gradcheck_with(
        |t| t[0].batch_norm2d(&t[1], &t[2], BatchNormStats::new(&rm, &rv)),
        &inputs,
        opts,
    )
    .unwrap();
}

/// The fused block end, `relu(batch_norm2d(x) + r)`, in all four inputs. The residual is
/// pushed at least 0.5 away from where the sum would cross 0, so that no finite-difference
/// step (which moves every value of a channel, through its statistics) crosses the ReLU's kink.
#[test]
fn gradcheck_add_relu_training_mode() {
    let (rm, rv) = (Tensor::zeros(&[3]), Tensor::ones(&[3]));
    let (x, w, b) = (
        rand(&[4, 3, 3, 3], 11),
        rand(&[3], 12).add_scalar(1.5),
        rand(&[3], 13),
    );
    let normed = x.batch_norm2d(&w, &b, BatchNormStats::new(&rm.clone(), &rv.clone()));
    let r: Vec<f32> = (rand(x.shape(), 14).to_vec().iter())
        .zip(normed.to_vec())
        .map(|(&r, n)| if n + r >= 0.0 { r + 0.5 } else { r - 0.5 })
        .collect();
    let r = Tensor::from_vec(r, x.shape());
    let opts = GradcheckOptions {
        step: 5e-3,
        ..GradcheckOptions::default()
    };
    gradcheck_with(
        |t| t[0].batch_norm2d_add_relu(&t[3], &t[1], &t[2], BatchNormStats::new(&rm, &rv)),
        &[x, w, b, r],
        opts,
    )
    .unwrap();
}

#[test]
fn gradcheck_eval_mode() {
    let rm = rand(&[3], 4);
    let rv = rand(&[3], 5).add_scalar(1.5);
    let inputs = [rand(&[2, 3, 2, 3], 6), rand(&[3], 7), rand(&[3], 8)];
    gradcheck(
        |t| t[0].batch_norm2d(&t[1], &t[2], BatchNormStats::new(&rm, &rv).training(false)),
        &inputs,
    )
    .unwrap();
}

#[test]
fn large_input_parallel_path_normalises_each_channel() {
    // 8·16·16·16 = 32768 elements take the parallel passes.
    let x = rand(&[8, 16, 16, 16], 9).mul_scalar(3.0).add_scalar(2.0);
    let (w, b) = (Tensor::ones(&[16]), Tensor::zeros(&[16]));
    let (rm, rv) = (Tensor::zeros(&[16]), Tensor::ones(&[16]));
    let y = x
        .batch_norm2d(&w, &b, BatchNormStats::new(&rm, &rv))
        .to_vec();
    for c in 0..16 {
        let vals: Vec<f64> = (0..8)
            .flat_map(|n| y[(n * 16 + c) * 256..(n * 16 + c + 1) * 256].iter())
            .map(|&v| v as f64)
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "channel {c}: {mean} {var}"
        );
    }
    // The running mean moved a tenth of the way to the batch mean (about 2).
    assert!(rm.to_vec().iter().all(|&m| (m - 0.2).abs() < 0.02));
}

#[test]
#[should_panic(expected = "batch_norm2d: input [2, 3, 4, 4] has 3 channels but running_var is [4]")]
fn channel_mismatch_is_named() {
    let c3 = Tensor::ones(&[3]);
    Tensor::zeros(&[2, 3, 4, 4]).batch_norm2d(
        &c3,
        &c3,
        BatchNormStats::new(&c3, &Tensor::ones(&[4])),
    );
}

#[test]
#[should_panic(expected = "batch_norm2d: training needs more than one value per channel")]
fn single_value_per_channel_is_named() {
    let c = Tensor::ones(&[2]);
    Tensor::zeros(&[1, 2, 1, 1]).batch_norm2d(&c, &c, BatchNormStats::new(&c, &c));
}

// ---------------------------------------------------------------------------------------------
// Values from PyTorch
//
// Inputs are rebuilt from `seq` on both sides; the expected values below were printed by this
// script (torch 2.15.0+cu132, CPU, float32):
//
// ```python
// import numpy as np, torch, torch.nn.functional as F
// def seq(n, a, b): return (torch.arange(n, dtype=torch.float64) * a + b).sin().float()
// def lit(name, t):  # shortest decimal that round-trips each f32
//     print(f"#[rustfmt::skip]\nconst {name}: &[f32] = &[{', '.join(str(v) for v in t.detach().numpy().flatten())}];")
// xs, c = (3, 4, 3, 5), 4
// for name, training in [("TRAIN", True), ("EVAL", False)]:
//     x = (2.0 * seq(torch.Size(xs).numel(), 0.7, 0.1) + 0.5).reshape(xs).requires_grad_()
//     w = (1.0 + 0.5 * seq(c, 1.3, 0.2)).requires_grad_()
//     b = (0.5 * seq(c, 2.1, 0.3)).requires_grad_()
//     rm, rv = 0.3 * seq(c, 0.5, 0.0), 1.0 + 0.5 * seq(c, 0.8, 0.4)
//     y = F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.1, eps=1e-5)
//     gy = seq(y.numel(), 0.9, 0.3).reshape(y.shape)
//     (y * gy).sum().backward()
//     lit(f"{name}_Y", y.detach()); lit(f"{name}_DX", x.grad)
//     lit(f"{name}_DW", w.grad); lit(f"{name}_DB", b.grad)
//     lit(f"{name}_RUNNING_MEAN", rm); lit(f"{name}_RUNNING_VAR", rv)
// ```
//
// Compared at 1e-4 absolute + 1e-4 relative (the statistics are sums of 45 values per channel).

/// `sin(i·a + b)` for `i` in `0..n`, computed in f64 and rounded to f32 (as the script does).
fn seq(n: usize, a: f64, b: f64) -> Vec<f32> {
    (0..n).map(|i| ((i as f64) * a + b).sin() as f32).collect()
}

fn affine(v: Vec<f32>, scale: f32, shift: f32) -> Vec<f32> {
    v.into_iter().map(|v| scale * v + shift).collect()
}

#[allow(clippy::too_many_arguments)]
fn against_torch(
    training: bool,
    y_want: &[f32],
    dx_want: &[f32],
    dw_want: &[f32],
    db_want: &[f32],
    rm_want: &[f32],
    rv_want: &[f32],
) {
    let (xs, c) = ([3, 4, 3, 5], 4);
    let x = Tensor::from_vec(affine(seq(180, 0.7, 0.1), 2.0, 0.5), &xs).set_requires_grad(true);
    let w = Tensor::from_vec(affine(seq(c, 1.3, 0.2), 0.5, 1.0), &[c]).set_requires_grad(true);
    let b = Tensor::from_vec(affine(seq(c, 2.1, 0.3), 0.5, 0.0), &[c]).set_requires_grad(true);
    let rm = Tensor::from_vec(affine(seq(c, 0.5, 0.0), 0.3, 0.0), &[c]);
    let rv = Tensor::from_vec(affine(seq(c, 0.8, 0.4), 0.5, 1.0), &[c]);
    let y = x.batch_norm2d(&w, &b, BatchNormStats::new(&rm, &rv).training(training));
    let gy = Tensor::from_vec(seq(y.numel(), 0.9, 0.3), y.shape());
    y.mul(&gy).sum().backward();
    for (what, got, want) in [
        ("y", y.to_vec(), y_want),
        ("dx", x.grad().unwrap().to_vec(), dx_want),
        ("dweight", w.grad().unwrap().to_vec(), dw_want),
        ("dbias", b.grad().unwrap().to_vec(), db_want),
        ("running_mean", rm.to_vec(), rm_want),
        ("running_var", rv.to_vec(), rv_want),
    ] {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }
}

#[test]
fn torch_training_mode_and_running_stats() {
    against_torch(
        true,
        TRAIN_Y,
        TRAIN_DX,
        TRAIN_DW,
        TRAIN_DB,
        TRAIN_RUNNING_MEAN,
        TRAIN_RUNNING_VAR,
    );
}

#[test]
fn torch_eval_mode_leaves_running_stats() {
    against_torch(
        false,
        EVAL_Y,
        EVAL_DX,
        EVAL_DW,
        EVAL_DB,
        EVAL_RUNNING_MEAN,
        EVAL_RUNNING_VAR,
    );
}

#[rustfmt::skip]
const TRAIN_Y: &[f32] = &[0.30594963, 1.2711331, 1.708988, 1.4135848, 0.5238557, -0.5417455, -1.28205, -1.348881, -0.7108067, 0.33207625, 1.289284, 1.7106265, 1.3979404, 0.49828598, -0.5652146, -1.5956367, -1.6617472, -0.7784497, 0.63882726, 1.923516, 2.4714074, 2.02482, 0.7937901, -0.6427092, -1.60907, -1.6507976, -0.74826705, 0.6740476, 1.9472096, 2.4724305, 0.7748335, -0.19254927, -1.3069859, -2.0443392, -2.0578203, -1.3410891, -0.23123533, 0.74975944, 1.1405182, 0.75726056, -0.21976095, -1.331038, -2.0539198, -2.0484235, -1.3171343, 0.30992788, 0.8058855, 0.9962591, 0.791513, 0.2879425, -0.27761534, -0.6391698, -0.6266762, -0.2460105, 0.32379436, 0.8147502, 0.9959528, 0.7821798, 0.27397192, -0.2896527, -1.3378625, -1.2966056, -0.57502955, 0.4874972, 1.3912517, 1.7111844, 1.2968253, 0.3430546, -0.7015548, -1.3457066, -1.2864463, -0.55164474, 0.5131092, 1.4070452, 1.7097312, 1.8851993, 0.5830476, -0.8254581, -1.6778755, -1.5732996, -0.5609139, 0.8831406, 2.0797026, 2.4660103, 1.8603773, 0.54764193, -0.85479563, -1.6873472, -1.5584506, -0.528728, -0.06918673, 0.85060817, 1.1327361, 0.6445079, -0.38445497, -1.4702152, -2.1021228, -1.9829819, -1.1688262, -0.04256573, 0.8661014, 1.1298149, 0.62454623, -0.4120688, -1.4924941, -0.66241187, -0.5919624, -0.16966723, 0.40586162, 0.86394393, 0.9891364, 0.72255915, 0.18958755, -0.35911354, -0.6654814, -0.5854264, -0.1565997, 0.4193148, 0.8714555, 0.9871737, 1.1840466, 0.18585894, -0.82923573, -1.3838226, -1.2170707, -0.40740606, 0.66437334, 1.4941928, 1.6917754, 1.1641951, 0.15958078, -0.8495814, -1.388667, -1.2041353, -0.3827747, 1.0868821, 2.1946757, 2.4381413, 1.7027733, 0.33442685, -1.0233436, -1.7319571, -1.4581418, -0.33067733, 1.1201721, 2.2120497, 2.431428, 1.67513, 0.29885462, -1.0501144, -2.134086, -1.9025117, -1.0137693, 0.11415213, 0.95077336, 1.1026185, 0.4982723, -0.5780317, -1.6200911, -2.1378088, -1.8876944, -0.98738027, 0.13970156, 0.96346694, 1.0964862, 0.65717816, 0.10486303, -0.4233343, -0.6789944, -0.54187626, -0.07646873, 0.49833977, 0.9122078, 0.9704868, 0.6457672, 0.090769745, -0.4334816, -0.6804233, -0.5339147, -0.062861174];
#[rustfmt::skip]
const TRAIN_DX: &[f32] = &[0.19659208, 0.54140544, 0.41837755, -0.09922074, -0.60629994, -0.67880946, -0.21360528, 0.47078985, 0.8594667, 0.6293786, -0.09258924, -0.803426, -0.98427093, -0.48409972, 0.35932082, 0.63190186, 0.51626927, -0.10411431, -0.71380717, -0.7776811, -0.1805701, 0.6541449, 1.0715373, 0.6916963, -0.2726464, -1.1419644, -1.2605455, -0.49170193, 0.65670794, 1.3818183, 0.4018249, -0.0076854094, -0.43149573, -0.4795182, -0.06952142, 0.48905635, 0.72888887, 0.39940423, -0.31110218, -0.889252, -0.87366104, -0.2153236, 0.6567038, 1.1274767, 0.84038126, 0.05938564, -0.15085194, -0.19734, -0.03114905, 0.20716467, 0.30088365, 0.13824011, -0.18379097, -0.42060074, -0.36548552, -0.019005723, 0.39208513, 0.56976765, 0.36413723, -0.105890654, -0.38313583, -0.5432404, -0.23403339, 0.27779725, 0.5567776, 0.35084206, -0.19865371, -0.6570927, -0.63433284, -0.10027934, 0.5700859, 0.86675936, 0.5319392, -0.22922103, -0.88118446, -0.7579912, -0.3974863, 0.2665505, 0.658321, 0.4369996, -0.2244823, -0.77286553, -0.71802676, -0.03922368, 0.76993436, 1.0655886, 0.55570704, -0.44679484, -1.2265518, -1.1867541, -0.40189436, 0.11243931, 0.45664433, 0.3526749, -0.0904021, -0.47323763, -0.43853733, 0.026764909, 0.563123, 0.71396285, 0.29503956, -0.43316495, -0.93597203, -0.8014222, -0.06682646, 0.017538073, 0.23207049, 0.21961555, 0.020095933, -0.17393278, -0.18255208, 0.009802075, 0.23830834, 0.291548, 0.08960463, -0.23682012, -0.4349131, -0.32379287, 0.054038048, 0.4452971, 0.60546964, 0.52060723, 0.032804422, -0.44279712, -0.52114975, -0.15051128, 0.35194987, 0.5574312, 0.27283904, -0.2954031, -0.6933625, -0.5743637, 0.017250666, 0.6581784, 0.8550193, 0.8199005, 0.1345604, -0.56605554, -0.7390705, -0.2918027, 0.36608478, 0.6660867, 0.3443065, -0.34149548, -0.8136689, -0.6394112, 0.106200755, 0.8703145, 1.0353223, 0.40475786, 0.1802488, -0.43490583, -0.6346295, -0.32308605, 0.19375886, 0.47270027, 0.29319084, -0.1713089, -0.50229126, -0.38442308, 0.12531534, 0.62559843, 0.6817909, 0.18122393, -0.54855037, -0.2527781, -0.38311848, -0.22456057, 0.06475709, 0.24742164, 0.19509847, -0.019004785, -0.19134802, -0.16161679, 0.051897615, 0.26416135, 0.27445713, 0.0371332, -0.2860418, -0.43991506];
#[rustfmt::skip]
const TRAIN_DW: &[f32] = &[10.009861, -11.575833, 13.870632, -15.955893];
#[rustfmt::skip]
const TRAIN_DB: &[f32] = &[0.53789973, 0.6562932, 0.24298511, -0.36717936];
#[rustfmt::skip]
const TRAIN_RUNNING_MEAN: &[f32] = &[0.049724814, 0.17763177, 0.27919677, 0.319235];
#[rustfmt::skip]
const TRAIN_RUNNING_VAR: &[f32] = &[1.2776164, 1.5246575, 1.5150573, 1.2530622];
#[rustfmt::skip]
const EVAL_Y: &[f32] = &[0.85146135, 2.0936282, 2.6571364, 2.27696, 1.131901, -0.23950097, -1.1922542, -1.278264, -0.45707855, 0.88508564, 2.116988, 2.6592453, 2.256826, 1.0989934, -0.26970506, -1.5058492, -1.5831976, -0.54975176, 1.1084427, 2.6115108, 3.252536, 2.730035, 1.2897471, -0.39093724, -1.5215659, -1.5703868, -0.5144384, 1.14965, 2.639232, 3.2537332, 1.2566762, 0.118684255, -1.192296, -2.0596902, -2.075549, -1.2324139, 0.07317547, 1.2271801, 1.6868536, 1.236004, 0.08667348, -1.2205902, -2.0709605, -2.064495, -1.2042344, 0.46572942, 1.1113144, 1.3591225, 1.0926058, 0.43711117, -0.29907206, -0.76970536, -0.75344247, -0.25793222, 0.48377934, 1.1228535, 1.3587239, 1.0804569, 0.4189257, -0.314741, -1.2640835, -1.210987, -0.2823367, 1.0851085, 2.2482178, 2.6599631, 2.1266935, 0.8992145, -0.44517148, -1.2741786, -1.1979121, -0.25224108, 1.1180705, 2.2685437, 2.658093, 2.5666807, 1.0431813, -0.6047509, -1.6020675, -1.4797151, -0.29523787, 1.394286, 2.7942472, 3.2462218, 2.5376394, 1.0017571, -0.6390754, -1.6131492, -1.4623419, -0.25758076, 0.2638032, 1.3458146, 1.6776991, 1.1033661, -0.10706622, -1.3843129, -2.1276648, -1.987512, -1.0297704, 0.29511914, 1.3640403, 1.6742626, 1.079884, -0.1395501, -1.4105209, -0.79995936, -0.7082557, -0.15855666, 0.59060574, 1.1868887, 1.349851, 1.002849, 0.3090831, -0.40515777, -0.8039549, -0.69974786, -0.14154673, 0.6081177, 1.1966665, 1.3472961, 1.9815502, 0.69690764, -0.6094937, -1.3232329, -1.1086274, -0.0666095, 1.3127437, 2.3807006, 2.6349843, 1.9560016, 0.6630883, -0.63567805, -1.3294675, -1.09198, -0.03490954, 1.6326607, 2.9287639, 3.2136152, 2.353245, 0.7522985, -0.8362741, -1.6653422, -1.3449821, -0.02586424, 1.6716096, 2.9490912, 3.2057607, 2.3209026, 0.7106794, -0.8675957, -2.1652648, -1.8928499, -0.84736747, 0.479476, 1.4636451, 1.6422698, 0.9313402, -0.33478248, -1.560621, -2.1696444, -1.8754193, -0.81632435, 0.5095314, 1.4785774, 1.6350561, 0.917743, 0.19879772, -0.48875353, -0.8215447, -0.6430589, -0.037240725, 0.71098405, 1.2497135, 1.3255749, 0.9028894, 0.18045259, -0.50196224, -0.8234047, -0.6326954, -0.019527853];
#[rustfmt::skip]
const EVAL_DX: &[f32] = &[0.29722425, 0.9374134, 0.8681868, 0.14193372, -0.6917319, -1.0019087, -0.55386084, 0.31333774, 0.94340867, 0.8595267, 0.12517206, -0.70391035, -1.0002874, -0.53966695, 0.32936272, 1.1681243, 1.0468813, 0.1333795, -0.88106126, -1.2287325, -0.6465234, 0.42496166, 1.1748443, 1.0356281, 0.11266926, -0.89555544, -1.2260418, -0.628684, 0.4444492, 1.1812321, 0.80085117, 0.071888745, -0.7114776, -0.9564119, -0.4775527, 0.36270884, 0.92847955, 0.79159546, 0.055647716, -0.7224132, -0.9537661, -0.46332794, 0.3777476, 0.9329512, 0.78211606, 0.022252504, -0.41416353, -0.53714883, -0.25363064, 0.22183019, 0.52941436, 0.4363483, 0.013062542, -0.42010868, -0.53535, -0.24544914, 0.23020273, 0.5316418, 0.43074495, 0.0038688872, -0.7834007, -0.98105526, -0.43626672, 0.43867978, 0.9816421, 0.7817173, -0.0097955875, -0.7938954, -0.97719103, -0.42096794, 0.45383528, 0.98518497, 0.77096635, -0.026704252, -0.80416566, -1.197555, -0.49911958, 0.5770395, 1.2165066, 0.9353457, -0.053666096, -1.0020646, -1.1921204, -0.48000345, 0.59537065, 1.22018, 0.92158157, -0.074451506, -1.0141411, -1.186349, -0.36031628, 0.47979453, 0.95680636, 0.7097262, -0.074460566, -0.80229706, -0.9229711, -0.34515908, 0.4938625, 0.95913875, 0.698558, -0.09067763, -0.81129014, -0.9179345, -0.3299043, 0.28685817, 0.54299533, 0.38820446, -0.06037182, -0.4632599, -0.5155621, -0.17769723, 0.2946454, 0.5440063, 0.38167405, -0.06950151, -0.46807972, -0.51242447, -0.16897666, 0.30234936, 1.0021397, 0.68978417, -0.14458624, -0.86953664, -0.93643904, -0.29466307, 0.5701081, 1.0034328, 0.67737955, -0.161301, -0.87791216, -0.93013686, -0.27845255, 0.5839591, 1.0044422, 0.8181637, -0.21903184, -1.0904685, -1.1366603, -0.3226503, 0.7355351, 1.2370821, 0.80243015, -0.23948503, -1.1001627, -1.1282592, -0.3025116, 0.75217074, 1.2376252, 0.7864697, -0.20322351, -0.8676853, -0.8755002, -0.22075395, 0.6010545, 0.9679969, 0.60237855, -0.21910788, -0.87477785, -0.86843336, -0.20487581, 0.6137276, 0.9678742, 0.5895529, -0.23493029, -0.49804115, -0.48645926, -0.106734715, 0.3537645, 0.5465418, 0.32570714, -0.14161618, -0.5017672, -0.48219085, -0.09770204, 0.36072567, 0.54616344, 0.31827557, -0.15047692, -0.5053515];
#[rustfmt::skip]
const EVAL_DW: &[f32] = &[13.127144, -13.360335, 16.37078, -20.837605];
#[rustfmt::skip]
const EVAL_DB: &[f32] = &[0.53789973, 0.6562932, 0.24298511, -0.36717936];
#[rustfmt::skip]
const EVAL_RUNNING_MEAN: &[f32] = &[0.0, 0.14382768, 0.2524413, 0.29924852];
#[rustfmt::skip]
const EVAL_RUNNING_VAR: &[f32] = &[1.1947092, 1.4660195, 1.4546487, 1.167494];

/// For each shape and mode (small: serial, large: parallel), `run(shape, training, fused)`
/// returns the named results of the fused op (`fused`) or of the separate ops; they must
/// agree bit for bit, and the fused output must hold both zeros and non-zeros (the ReLU bit).
fn assert_fused_matches_separate(
    names: &[&str],
    run: impl Fn([usize; 4], bool, bool) -> Vec<Tensor>,
) {
    let bits = |t: &Tensor| t.to_vec().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (shape, training) in [
        ([3, 4, 5, 5], true),
        ([3, 4, 5, 5], false),
        ([8, 16, 32, 32], true),
    ] {
        let fused: Vec<_> = run(shape, training, true).iter().map(bits).collect();
        let separate: Vec<_> = run(shape, training, false).iter().map(bits).collect();
        assert!(fused[0].contains(&0) && fused[0].iter().any(|&v| v != 0));
        assert_eq!((fused.len(), separate.len()), (names.len(), names.len()));
        for (what, (f, s)) in names.iter().zip(fused.iter().zip(&separate)) {
            assert_eq!(f, s, "{what} of {shape:?}, training {training}");
        }
    }
}

/// `batch_norm2d_relu` equals `batch_norm2d` then `relu` bit for bit: values, all three
/// gradients and the running statistics, in training and eval mode, small (serial) and large
/// (parallel) inputs.
#[test]
fn fused_relu_matches_the_separate_ops_bit_for_bit() {
    let names = ["y", "dx", "dγ", "dβ", "running_mean", "running_var"];
    assert_fused_matches_separate(&names, |shape, training, fused| {
        let x = rand(&shape, 21).set_requires_grad(true);
        let (w, b) = (
            rand(&[shape[1]], 22).set_requires_grad(true),
            rand(&[shape[1]], 23).set_requires_grad(true),
        );
        let (rm, rv) = (rand(&[shape[1]], 24), rand(&[shape[1]], 25).add_scalar(1.5));
        let stats = BatchNormStats::new(&rm, &rv).training(training);
        let y = if fused {
            x.batch_norm2d_relu(&w, &b, stats)
        } else {
            x.batch_norm2d(&w, &b, stats).relu()
        };
        y.mul(&rand(y.shape(), 26)).sum().backward();
        let grads = [&x, &w, &b].map(|t| t.grad().unwrap());
        [vec![y], grads.to_vec(), vec![rm, rv]].concat()
    });
}

/// `batch_norm2d_add_relu` equals `batch_norm2d`, `add`, `relu` bit for bit: values, the
/// gradients of the input, γ, β and the residual, and the running statistics, in training and
/// eval mode, small (serial) and large (parallel) inputs.
#[test]
fn fused_add_relu_matches_the_separate_ops_bit_for_bit() {
    let names = ["y", "dx", "dγ", "dβ", "dr", "running_mean", "running_var"];
    assert_fused_matches_separate(&names, |shape, training, fused| {
        let x = rand(&shape, 31).set_requires_grad(true);
        let r = rand(&shape, 32).set_requires_grad(true);
        let (w, b) = (
            rand(&[shape[1]], 33).set_requires_grad(true),
            rand(&[shape[1]], 34).set_requires_grad(true),
        );
        let (rm, rv) = (rand(&[shape[1]], 35), rand(&[shape[1]], 36).add_scalar(1.5));
        let stats = BatchNormStats::new(&rm, &rv).training(training);
        let y = if fused {
            x.batch_norm2d_add_relu(&r, &w, &b, stats)
        } else {
            x.batch_norm2d(&w, &b, stats).add(&r).relu()
        };
        y.mul(&rand(y.shape(), 37)).sum().backward();
        let grads = [&x, &w, &b, &r].map(|t| t.grad().unwrap());
        [vec![y], grads.to_vec(), vec![rm, rv]].concat()
    });
}

#[test]
#[should_panic(expected = "residual [2, 3, 4, 4] must have the input's shape [2, 3, 4, 5]")]
fn residual_shape_mismatch_is_named() {
    let (rm, rv) = (Tensor::zeros(&[3]), Tensor::ones(&[3]));
    rand(&[2, 3, 4, 5], 1).batch_norm2d_add_relu(
        &rand(&[2, 3, 4, 4], 2),
        &Tensor::ones(&[3]),
        &Tensor::zeros(&[3]),
        BatchNormStats::new(&rm, &rv),
    );
}
