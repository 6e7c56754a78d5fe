//! Invariants of the transforms and recipes.

use super::*;
use crate::normalize::DatasetKind;
use crate::ImageSet;

fn ramp(c: usize, h: usize, w: usize) -> Image {
    let data = (0..c * h * w)
        .map(|i| ((i * 37) % 256) as f32 / 255.0)
        .collect();
    Image {
        data,
        channels: c,
        height: h,
        width: w,
    }
}

fn constant(c: usize, h: usize, w: usize, v: f32) -> Image {
    Image {
        data: vec![v; c * h * w],
        channels: c,
        height: h,
        width: w,
    }
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

fn random_set(n: usize, c: usize, side: usize) -> ImageSet {
    let mut rng = image_rng(1, 2, 3, 4);
    let images = (0..n * c * side * side)
        .map(|_| rand::Rng::gen(&mut rng))
        .collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    ImageSet::new(images, labels, c, side, side, crate::mnist::class_names()).unwrap()
}

#[test]
fn flip_twice_is_identity() {
    let a = ramp(3, 32, 32);
    let mut b = a.clone();
    hflip(&mut b);
    assert_ne!(a, b);
    assert_eq!(b.data[31], a.data[0]);
    hflip(&mut b);
    assert_eq!(a, b);
}

#[test]
fn crop_output_size() {
    let mut s = Scratch::default();
    for (c, side) in [(1, 28), (3, 32)] {
        for seed in 0..50 {
            let mut im = ramp(c, side, side);
            let crop = RandomResizedCrop::new((0.08, 1.0));
            crop.apply(&mut im, &mut s, &mut image_rng(seed, 0, 0, 0));
            assert_eq!((im.channels, im.height, im.width), (c, side, side));
            assert_eq!(im.data.len(), c * side * side);
            assert!(im.data.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }
    let mut im = ramp(3, 32, 32);
    let crop = RandomResizedCrop {
        size: Some((24, 20)),
        ..RandomResizedCrop::new((0.5, 1.0))
    };
    crop.apply(&mut im, &mut s, &mut image_rng(0, 0, 0, 0));
    assert_eq!((im.height, im.width, im.data.len()), (24, 20, 3 * 24 * 20));
}

#[test]
fn crop_params_respect_scale_and_ratio() {
    let crop = RandomResizedCrop::new((0.08, 1.0));
    let mut rng = image_rng(9, 0, 0, 0);
    for _ in 0..1000 {
        let (t, l, h, w) = crop.params(32, 32, &mut rng);
        assert!(t + h <= 32 && l + w <= 32 && h > 0 && w > 0);
        let area = (h * w) as f32 / 1024.0;
        assert!((0.05..=1.0).contains(&area), "{area}");
    }
    // A full-size crop resized to the same size is the identity.
    let mut s = Scratch::default();
    let a = ramp(3, 32, 32);
    let mut b = a.clone();
    geometry::resize_region(&mut b, (0, 0, 32, 32), (32, 32), &mut s);
    for (x, y) in a.data.iter().zip(&b.data) {
        assert!((x - y).abs() < 1e-6);
    }
}

#[test]
fn blur_preserves_mean_of_constant_image() {
    let mut s = Scratch::default();
    for (c, side, k) in [(1, 28, 5), (3, 32, 3), (1, 4, 9)] {
        let mut im = constant(c, side, side, 0.37);
        let b = GaussianBlur {
            kernel: k,
            sigma: (0.1, 2.0),
        };
        b.apply(&mut im, &mut s, &mut image_rng(3, 0, 0, 0));
        assert!((mean(&im.data) - 0.37).abs() < 1e-5);
        assert!(im.data.iter().all(|v| (v - 0.37).abs() < 1e-5));
    }
    // On a non-constant image, blur preserves the mean only approximately (borders), and
    // reduces the variance.
    let mut im = ramp(1, 28, 28);
    let before = im.clone();
    blur::blur(&mut im, 5, 2.0, &mut s);
    let var = |v: &[f32]| {
        let m = mean(v);
        v.iter().map(|x| (x - m) * (x - m)).sum::<f32>()
    };
    assert!(var(&im.data) < var(&before.data));
}

#[test]
fn separable_blur_matches_a_direct_2d_convolution() {
    let (c, h, w, k, sigma) = (3, 7, 9, 5, 1.3);
    let src = ramp(c, h, w);
    let mut fast = src.clone();
    blur::blur(&mut fast, k, sigma, &mut Scratch::default());
    let (kw, _) = blur::kernel(k, sigma);
    let reflect = |i: isize, n: isize| -> usize {
        let i = if i < 0 { -i } else { i };
        (if i >= n { 2 * (n - 1) - i } else { i }) as usize
    };
    let r = (k / 2) as isize;
    for ch in 0..c {
        for y in 0..h as isize {
            for x in 0..w as isize {
                let mut acc = 0.0;
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (sy, sx) = (reflect(y + dy, h as isize), reflect(x + dx, w as isize));
                        acc += kw[(dy + r) as usize]
                            * kw[(dx + r) as usize]
                            * src.data[ch * h * w + sy * w + sx];
                    }
                }
                let got = fast.data[ch * h * w + y as usize * w + x as usize];
                assert!((got - acc).abs() < 1e-5, "({ch},{y},{x}): {got} vs {acc}");
            }
        }
    }
}

#[test]
fn blur_kernel_is_normalised_and_symmetric() {
    let (k, n) = blur::kernel(5, 1.0);
    assert_eq!(n, 5);
    assert!((k[..5].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!((k[0] - k[4]).abs() < 1e-7 && k[2] > k[1]);
}

#[test]
fn rotation_by_zero_is_identity_and_fills_black() {
    let mut s = Scratch::default();
    let a = ramp(3, 32, 32);
    let mut b = a.clone();
    geometry::rotate(&mut b, 0.0, &mut s);
    for (x, y) in a.data.iter().zip(&b.data) {
        assert!((x - y).abs() < 1e-5);
    }
    // A 45° turn of a white image leaves black corners and a white centre.
    let mut w = constant(1, 28, 28, 1.0);
    geometry::rotate(&mut w, 45.0, &mut s);
    assert!(w.data[0] < 1e-6);
    assert!((w.data[14 * 28 + 14] - 1.0).abs() < 1e-5);
    // 90° moves the top-centre pixel to the left-centre (counter-clockwise).
    let mut im = constant(1, 5, 5, 0.0);
    im.data[2] = 1.0; // (y 0, x 2)
    geometry::rotate(&mut im, 90.0, &mut s);
    assert!((im.data[2 * 5] - 1.0).abs() < 1e-5, "{:?}", im.data);
}

#[test]
fn color_ops_stay_in_range_and_grayscale_is_gray() {
    let mut rng = image_rng(5, 0, 0, 0);
    let jitter = ColorJitter {
        brightness: 0.4,
        contrast: 0.4,
        saturation: 0.4,
        hue: 0.1,
    };
    for _ in 0..20 {
        let mut im = ramp(3, 8, 8);
        jitter.apply(&mut im, &mut rng);
        assert!(im.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    let mut g = ramp(3, 8, 8);
    grayscale(&mut g);
    assert_eq!(&g.data[..64], &g.data[64..128]);
    assert_eq!(&g.data[..64], &g.data[128..]);
    // HSV round trip.
    for &(r, gg, b) in &[
        (0.2, 0.5, 0.9),
        (1.0, 0.0, 0.0),
        (0.3, 0.3, 0.3),
        (0.9, 0.8, 0.1),
    ] {
        let (h, s, v) = color::rgb_to_hsv(r, gg, b);
        let (r2, g2, b2) = color::hsv_to_rgb(h, s, v);
        assert!((r - r2).abs() < 1e-5 && (gg - g2).abs() < 1e-5 && (b - b2).abs() < 1e-5);
    }
    // Hue shift by a whole turn changes nothing.
    let a = ramp(3, 4, 4);
    let mut b = a.clone();
    color::hue(&mut b, 1.0);
    for (x, y) in a.data.iter().zip(&b.data) {
        assert!((x - y).abs() < 1e-4);
    }
}

#[test]
fn same_seed_same_views_different_seed_different_views() {
    for (kind, c, side) in [(DatasetKind::Cifar10, 3, 32), (DatasetKind::Mnist, 1, 28)] {
        let set = random_set(16, c, side);
        let idx: Vec<usize> = (0..16).collect();
        let a = Augmenter::new(Recipe::Simclr, kind, 7);
        let v1 = a.two_views(&set, &idx, 0).unwrap();
        let v2 = a.two_views(&set, &idx, 0).unwrap();
        assert_eq!(v1, v2);
        assert_eq!(v1.len(), 2 * 16 * c * side * side);
        let other = Augmenter::new(Recipe::Simclr, kind, 8)
            .two_views(&set, &idx, 0)
            .unwrap();
        assert_ne!(v1, other);
        let next_epoch = a.two_views(&set, &idx, 1).unwrap();
        assert_ne!(v1, next_epoch);
        // The two views of one image differ.
        let n = c * side * side;
        assert_ne!(&v1[..n], &v1[16 * n..17 * n]);
        // Views do not depend on the batch composition: image 5 alone gets the same views.
        let single = a.two_views(&set, &[5], 0).unwrap();
        assert_eq!(&single[..n], &v1[5 * n..6 * n]);
        assert_eq!(&single[n..], &v1[21 * n..22 * n]);
    }
}

#[test]
fn report_recipe_view0_is_the_normalised_image() {
    let set = random_set(4, 1, 28);
    let a = Augmenter::new(Recipe::Report, DatasetKind::Mnist, 1);
    let v = a.two_views(&set, &[0, 1, 2, 3], 0).unwrap();
    let plain = set.to_normalized(&crate::Normalize::mnist());
    assert_eq!(&v[..plain.len()], &plain[..]);
    let none = Augmenter::new(Recipe::None, DatasetKind::Mnist, 1);
    let w = none.two_views(&set, &[0, 1, 2, 3], 0).unwrap();
    assert_eq!(&w[plain.len()..], &plain[..]);
}

#[test]
fn recipes_parse() {
    assert_eq!("report".parse::<Recipe>().unwrap(), Recipe::Report);
    assert_eq!("SimCLR".parse::<Recipe>().unwrap(), Recipe::Simclr);
    assert_eq!("none".parse::<Recipe>().unwrap(), Recipe::None);
    assert!("strong".parse::<Recipe>().is_err());
    // The MNIST simclr recipe has no flip; the CIFAR one has flip, jitter and grayscale.
    let [m, _] = Recipe::Simclr.pipelines(DatasetKind::Mnist);
    assert!(!m.steps.iter().any(|s| s.op == Op::HFlip));
    let [c, _] = Recipe::Simclr.pipelines(DatasetKind::Cifar10);
    assert!(c
        .steps
        .iter()
        .any(|s| s.op == Op::Grayscale && (s.p - 0.2).abs() < 1e-6));
    let [r0, r1] = Recipe::Report.pipelines(DatasetKind::Cifar10);
    assert!(r0.is_identity() && r1.steps.len() == 4);
}

#[test]
fn degenerate_images_do_not_panic() {
    let mut s = Scratch::default();
    let mut rng = image_rng(0, 0, 0, 0);
    for (c, h, w) in [(1, 1, 1), (3, 1, 5), (1, 0, 0), (3, 2, 1)] {
        let mut im = ramp(c, h, w);
        for p in [DatasetKind::Mnist, DatasetKind::Cifar10]
            .iter()
            .flat_map(|&k| {
                Recipe::Simclr
                    .pipelines(k)
                    .into_iter()
                    .chain(Recipe::Report.pipelines(k))
            })
        {
            p.apply(&mut im, &mut s, &mut rng);
            assert_eq!(im.data.len(), c * h * w);
        }
    }
}

#[test]
fn with_crop_scale_sets_the_smallest_crop_of_both_views_only() {
    let aug = Augmenter::new(Recipe::Simclr, DatasetKind::Cifar10, 0).with_crop_scale(0.2);
    let crops: Vec<&RandomResizedCrop> = aug
        .pipelines
        .iter()
        .flat_map(|p| &p.steps)
        .filter_map(|s| match &s.op {
            Op::ResizedCrop(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(crops.len(), 2);
    for c in crops {
        assert_eq!(c.scale, (0.2, 1.0));
    }
    // Everything else is the recipe's.
    let plain = Augmenter::new(Recipe::Simclr, DatasetKind::Cifar10, 0);
    for (a, b) in aug.pipelines.iter().zip(&plain.pipelines) {
        assert_eq!(a.steps.len(), b.steps.len());
        for (x, y) in a.steps.iter().zip(&b.steps) {
            assert_eq!(x.p, y.p);
            if !matches!(x.op, Op::ResizedCrop(_)) {
                assert_eq!(x.op, y.op);
            }
        }
    }
}

#[test]
fn smaller_views_stack_and_the_loader_reports_their_shape() {
    let set = random_set(6, 3, 32);
    let aug = Augmenter::new(Recipe::Simclr, DatasetKind::Cifar10, 3).with_view_size(24);
    assert_eq!(aug.view_shape([3, 32, 32]).unwrap(), [3, 24, 24]);
    let views = aug.two_views(&set, &[0, 1, 2], 0).unwrap();
    assert_eq!(views.len(), 2 * 3 * 3 * 24 * 24);
    assert!(views.iter().all(|v| v.is_finite()));
    let loader =
        crate::Loader::new(set, aug, crate::LoaderConfig::two_views(3)).expect("a valid loader");
    let batch = loader.epoch(0).next().expect("one batch");
    assert_eq!(batch.dims(), [6, 3, 24, 24]);
    assert_eq!(batch.data.len(), 6 * 3 * 24 * 24);
}

#[test]
fn views_that_could_differ_in_size_are_refused() {
    // The report's recipe keeps view 0 whole: resizing view 1 alone cannot stack.
    let aug = Augmenter::new(Recipe::Report, DatasetKind::Cifar10, 0).with_view_size(24);
    let err = aug.view_shape([3, 32, 32]).unwrap_err().to_string();
    assert!(err.contains("probability below 1"), "{err}");
    let mut aug = Augmenter::new(Recipe::Simclr, DatasetKind::Cifar10, 0);
    if let Op::ResizedCrop(c) = &mut aug.pipelines[1].steps[0].op {
        c.size = Some((24, 24));
    }
    let err = aug.view_shape([3, 32, 32]).unwrap_err().to_string();
    assert!(err.contains("must match"), "{err}");
}
