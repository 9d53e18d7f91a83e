//! Bilinear resampling as Pillow's `Image.resize(size, Image.BILINEAR)` does it, which is what
//! torchvision's `Resize` runs on PIL images and what the reference scores of our models were
//! made with.
//!
//! Pillow resamples with a separable filter whose support grows with the reduction factor (so
//! a downscale averages every source pixel, with no aliasing): a horizontal pass first into an
//! 8-bit intermediate, then a vertical pass, both with 22-bit fixed-point weights. Doing the
//! same arithmetic gives the same bytes, which keeps osprey's top-1 equal to onnxruntime's.
//!
//! [`resize_window`] computes only a window of the output (the centre crop): every output
//! pixel depends only on its own coordinates, so the window equals the crop of a full resize
//! at a fraction of the cost.

use image::RgbImage;

/// Fixed-point precision of the weights (Pillow's `PRECISION_BITS`, `32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// The bilinear (triangle) kernel, support 1.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Weights of one axis for the outputs `from..from + count` of a resize from `input` to
/// `output` samples: for each output, the first input index and its fixed-point weights.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    /// Per output: first input index and number of weights.
    bounds: Vec<(usize, usize)>,
    /// Per output: `stride` weights (the first `bounds.1` are used).
    weights: Vec<i32>,
    stride: usize,
}

impl Axis {
    fn new(input: u32, output: u32, from: u32, count: u32) -> Axis {
        let scale = f64::from(input) / f64::from(output);
        let filter_scale = scale.max(1.0);
        let support = filter_scale; // the triangle's support (1) times the filter scale
        let stride = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(count as usize);
        let mut weights = vec![0i32; stride * count as usize];
        let mut k = vec![0f64; stride];
        for (i, out) in (from..from + count).enumerate() {
            let center = (f64::from(out) + 0.5) * scale;
            // `as` truncates toward zero, as Pillow's `(int)` casts do.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(i64::from(input)) as usize;
            let n = max.saturating_sub(min).min(stride);
            let mut sum = 0.0;
            for (x, w) in k.iter_mut().enumerate().take(n) {
                *w = triangle((x as f64 + min as f64 - center + 0.5) / filter_scale);
                sum += *w;
            }
            let row = &mut weights[i * stride..(i + 1) * stride];
            for (x, w) in k.iter().enumerate().take(n) {
                let w = if sum == 0.0 { 0.0 } else { w / sum };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                row[x] = if fixed < 0.0 {
                    (fixed - 0.5).trunc()
                } else {
                    (fixed + 0.5).trunc()
                } as i32;
            }
            bounds.push((min, n));
        }
        Axis {
            bounds,
            weights,
            stride,
        }
    }

    /// The fixed-point weighted sum of `n` samples read through `sample(index)`, rounded and
    /// clamped to a byte.
    #[inline]
    fn apply(&self, i: usize, mut sample: impl FnMut(usize) -> u8) -> u8 {
        let (min, n) = self.bounds[i];
        let w = &self.weights[i * self.stride..i * self.stride + n];
        let mut acc: i64 = 1 << (PRECISION_BITS - 1);
        for (x, &k) in w.iter().enumerate() {
            acc += i64::from(sample(min + x)) * i64::from(k);
        }
        (acc >> PRECISION_BITS).clamp(0, 255) as u8
    }
}

/// Resizes `img` to `width × height` the way Pillow's bilinear `resize` does and returns the
/// window `x0..x0 + w` × `y0..y0 + h` of the result. The window must lie within the output.
pub fn resize_window(
    img: &RgbImage,
    (width, height): (u32, u32),
    (x0, y0): (u32, u32),
    (w, h): (u32, u32),
) -> RgbImage {
    assert!(
        x0 + w <= width && y0 + h <= height,
        "window outside the output"
    );
    let (iw, ih) = img.dimensions();
    let src = img.as_raw();
    // Vertical weights first: they say which source rows the horizontal pass must produce.
    let vertical = (height != ih).then(|| Axis::new(ih, height, y0, h));
    let (row0, rows) = match &vertical {
        Some(v) => {
            let first = v.bounds.first().map_or(0, |b| b.0);
            let last = v.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(first);
            (first, last - first)
        }
        None => (y0 as usize, h as usize),
    };
    // Horizontal pass over the needed rows only: `rows × w` pixels.
    let iw = iw as usize;
    let mut mid = vec![0u8; rows * w as usize * 3];
    if width != iw as u32 {
        let horizontal = Axis::new(iw as u32, width, x0, w);
        for r in 0..rows {
            let line = &src[(row0 + r) * iw * 3..(row0 + r + 1) * iw * 3];
            let out = &mut mid[r * w as usize * 3..(r + 1) * w as usize * 3];
            for x in 0..w as usize {
                for c in 0..3 {
                    out[x * 3 + c] = horizontal.apply(x, |s| line[s * 3 + c]);
                }
            }
        }
    } else {
        for r in 0..rows {
            let start = ((row0 + r) * iw + x0 as usize) * 3;
            mid[r * w as usize * 3..(r + 1) * w as usize * 3]
                .copy_from_slice(&src[start..start + w as usize * 3]);
        }
    }
    let Some(vertical) = vertical else {
        return RgbImage::from_raw(w, h, mid).expect("sized buffer");
    };
    let stride = w as usize * 3;
    let mut out = vec![0u8; h as usize * stride];
    for y in 0..h as usize {
        let line = &mut out[y * stride..(y + 1) * stride];
        for (i, px) in line.iter_mut().enumerate() {
            *px = vertical.apply(y, |s| mid[(s - row0) * stride + i]);
        }
    }
    RgbImage::from_raw(w, h, out).expect("sized buffer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic test picture.
    fn picture(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = x
                .wrapping_mul(2_654_435_761)
                .wrapping_add(y.wrapping_mul(40_503))
                .wrapping_add(seed);
            image::Rgb([(v >> 8) as u8, (x * 7 + y) as u8, (v >> 16) as u8])
        })
    }

    /// The naive reference: Pillow's algorithm written out per pixel in f64 (horizontal
    /// then vertical, each rounded to a byte), whole image.
    fn naive(img: &RgbImage, width: u32, height: u32) -> RgbImage {
        fn pass(input: u32, output: u32, at: u32, sample: impl Fn(u32) -> f64) -> u8 {
            let scale = f64::from(input) / f64::from(output);
            let fs = scale.max(1.0);
            let center = (f64::from(at) + 0.5) * scale;
            let (mut num, mut den) = (0.0, 0.0);
            for s in 0..input {
                let w = triangle((f64::from(s) - center + 0.5) / fs);
                num += w * sample(s);
                den += w;
            }
            (num / den).round().clamp(0.0, 255.0) as u8
        }
        let (iw, ih) = img.dimensions();
        let mid = if width == iw {
            img.clone()
        } else {
            RgbImage::from_fn(width, ih, |x, y| {
                image::Rgb(std::array::from_fn(|c| {
                    pass(iw, width, x, |s| f64::from(img.get_pixel(s, y)[c]))
                }))
            })
        };
        if height == ih {
            return mid;
        }
        RgbImage::from_fn(width, height, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                pass(ih, height, y, |s| f64::from(mid.get_pixel(x, s)[c]))
            }))
        })
    }

    /// Pillow's own output for `picture(w, h, 7)` resized to `(nw, nh)`: the sum and a
    /// position-weighted checksum of the bytes (scripts/pil_resize_golden.py).
    type Case = ((u32, u32), (u32, u32), u64, u64);
    const PILLOW: &[Case] = include!("pillow_golden.rs.in");

    fn checksums(img: &RgbImage) -> (u64, u64) {
        let raw = img.as_raw();
        let sum = raw.iter().map(|&b| u64::from(b)).sum();
        let weighted = raw
            .iter()
            .enumerate()
            .map(|(i, &b)| (i as u64 % 251 + 1) * u64::from(b))
            .sum();
        (sum, weighted)
    }

    #[test]
    fn equals_pillow() {
        for &((w, h), (nw, nh), sum, weighted) in PILLOW {
            let img = picture(w, h, 7);
            let got = resize_window(&img, (nw, nh), (0, 0), (nw, nh));
            assert_eq!(checksums(&got), (sum, weighted), "{w}×{h} → {nw}×{nh}");
        }
    }

    #[test]
    fn same_size_is_identity() {
        let img = picture(31, 17, 1);
        assert_eq!(resize_window(&img, (31, 17), (0, 0), (31, 17)), img);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// The window equals the crop of the whole resize, which is within two levels of the
        /// f64 reference: fixed-point weights can round an exact half the other way in each
        /// of the two passes (the Pillow golden test above is the exact check).
        #[test]
        fn window_matches_full_resize_and_reference(
            w in 1u32..70, h in 1u32..70, nw in 1u32..50, nh in 1u32..50,
            fx in 0.0f64..1.0, fy in 0.0f64..1.0, fw in 0.0f64..1.0, fh in 0.0f64..1.0,
            seed in 0u32..1000,
        ) {
            let img = picture(w, h, seed);
            let full = resize_window(&img, (nw, nh), (0, 0), (nw, nh));
            let reference = naive(&img, nw, nh);
            for (a, b) in full.as_raw().iter().zip(reference.as_raw()) {
                prop_assert!(a.abs_diff(*b) <= 2, "{a} vs {b}");
            }
            let x0 = (fx * f64::from(nw - 1)) as u32;
            let y0 = (fy * f64::from(nh - 1)) as u32;
            let cw = 1 + (fw * f64::from(nw - x0 - 1)) as u32;
            let ch = 1 + (fh * f64::from(nh - y0 - 1)) as u32;
            let window = resize_window(&img, (nw, nh), (x0, y0), (cw, ch));
            let crop = image::imageops::crop_imm(&full, x0, y0, cw, ch).to_image();
            prop_assert_eq!(window, crop);
        }
    }
}
