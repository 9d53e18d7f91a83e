//! Image bytes → normalised CHW tensor data, the torchvision way: decode (JPEG, PNG, WebP,
//! GIF first frame), convert to RGB, resize the shorter side to `resize` with Pillow's bilinear
//! filter ([`super::resize`]), centre-crop `size` × `size`, `(x / 255 - mean) / std`.
//!
//! Plain synchronous code: the operator runs it on the blocking pool. Decoder limits (bytes,
//! pixels, allocation) are checked before any pixel is decoded, so a small file that claims
//! to be 50,000 × 50,000 pixels (a decompression bomb) costs nothing.

use std::io::Cursor;

use image::{DynamicImage, ImageReader, Limits, RgbImage};

/// Preprocessing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Shorter side after resizing (256).
    pub resize: u32,
    /// Side of the centre crop (224): the model's input size.
    pub size: u32,
    /// Per-channel mean (RGB), on the 0..1 scale.
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB), on the 0..1 scale.
    pub std: [f32; 3],
    /// Largest accepted encoded size in bytes.
    pub max_bytes: usize,
    /// Largest accepted width × height.
    pub max_pixels: u64,
}

/// Why an image was rejected: the dead-letter reason and a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Stable reason code: `empty`, `too_large`, `too_many_pixels`, `not_an_image`,
    /// `corrupt_image`.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
}

fn rejected(reason: &'static str, message: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        message: message.into(),
    }
}

impl Preprocess {
    /// Floats per image (`3 × size × size`).
    pub fn len(&self) -> usize {
        3 * (self.size as usize) * (self.size as usize)
    }

    /// Never true: a tensor has at least one element (`size` ≥ 1 is validated).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes `bytes` within the limits and converts to RGB.
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage, Rejected> {
        if bytes.is_empty() {
            return Err(rejected("empty", "the object has zero bytes"));
        }
        if bytes.len() > self.max_bytes {
            return Err(rejected(
                "too_large",
                format!(
                    "{} bytes is over the {}-byte image limit",
                    bytes.len(),
                    self.max_bytes
                ),
            ));
        }
        let reader = || {
            ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()
                .map_err(|e| rejected("not_an_image", e.to_string()))
        };
        let probe = reader()?;
        if probe.format().is_none() {
            return Err(rejected(
                "not_an_image",
                "not a JPEG, PNG, WebP or GIF image",
            ));
        }
        if probe.format() == Some(image::ImageFormat::Jpeg) && !jpeg_complete(bytes) {
            // The decoder would fill the missing rows with grey and return a picture.
            return Err(rejected(
                "corrupt_image",
                "truncated JPEG: no end-of-image marker after the last scan",
            ));
        }
        let (w, h) = probe
            .into_dimensions()
            .map_err(|e| rejected("corrupt_image", format!("unreadable header: {e}")))?;
        let pixels = u64::from(w) * u64::from(h);
        if pixels > self.max_pixels {
            return Err(rejected(
                "too_many_pixels",
                format!(
                    "{w}×{h} = {pixels} pixels is over the {}-pixel limit",
                    self.max_pixels
                ),
            ));
        }
        if w == 0 || h == 0 {
            return Err(rejected("corrupt_image", format!("{w}×{h} image")));
        }
        let mut r = reader()?;
        let mut limits = Limits::default();
        limits.max_image_width = Some(w);
        limits.max_image_height = Some(h);
        // RGBA16 output plus the decoder's own buffers.
        limits.max_alloc = Some(pixels.saturating_mul(16).max(64 << 20));
        r.limits(limits);
        let img = r.decode().map_err(|e| match e {
            image::ImageError::Limits(l) => rejected("too_many_pixels", l.to_string()),
            image::ImageError::Unsupported(u) => rejected("not_an_image", u.to_string()),
            other => rejected("corrupt_image", other.to_string()),
        })?;
        Ok(to_rgb(img))
    }

    /// Resizes, crops and normalises a decoded image into `out` (`len()` floats, CHW).
    pub fn tensor_into(&self, img: &RgbImage, out: &mut [f32]) {
        let (w, h) = img.dimensions();
        let (nw, nh) = resized_dims(w, h, self.resize);
        let s = self.size;
        let (left, top) = (crop_offset(nw, s), crop_offset(nh, s));
        // Only the part of the resized image inside the crop is computed.
        let span = |offset: i64, len: u32| {
            let from = offset.max(0) as u32;
            let to = (offset + i64::from(s)).min(i64::from(len)) as u32;
            (from, to.saturating_sub(from))
        };
        let ((wx, ww), (wy, wh)) = (span(left, nw), span(top, nh));
        let window = super::resize::resize_window(img, (nw, nh), (wx, wy), (ww, wh));
        let (left, top) = (left - i64::from(wx), top - i64::from(wy));
        let (nw, nh) = (ww, wh);
        let plane = (s as usize) * (s as usize);
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| self.mean[c] / self.std[c]);
        for y in 0..s {
            for x in 0..s {
                // A crop larger than the resized image (tiny inputs) pads with black, as
                // torchvision's CenterCrop does.
                let (sx, sy) = (x as i64 + left, y as i64 + top);
                let px = if sx >= 0 && sy >= 0 && (sx as u32) < nw && (sy as u32) < nh {
                    window.get_pixel(sx as u32, sy as u32).0
                } else {
                    [0, 0, 0]
                };
                let i = (y * s + x) as usize;
                for c in 0..3 {
                    out[c * plane + i] = f32::from(px[c]) * scale[c] - shift[c];
                }
            }
        }
    }

    /// Decode and tensor in one step.
    pub fn run(&self, bytes: &[u8]) -> Result<Vec<f32>, Rejected> {
        let img = self.decode(bytes)?;
        let mut out = vec![0.0; self.len()];
        self.tensor_into(&img, &mut out);
        Ok(out)
    }
}

/// Whether a JPEG has an end-of-image marker (FF D9) after its last start-of-scan (FF DA).
/// Inside entropy-coded data a literal FF is stuffed as FF 00, so FF D9 there is a marker.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let find = |m: u8| bytes.windows(2).rposition(|w| w[0] == 0xFF && w[1] == m);
    match (find(0xDA), find(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

/// Greyscale, alpha, 16-bit and float images → 8-bit RGB (alpha dropped, as PIL's
/// `convert("RGB")` does). CMYK JPEGs are converted by the decoder.
fn to_rgb(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(i) => i,
        other => other.to_rgb8(),
    }
}

/// torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer one
/// `int(size * long / short)` (truncated).
pub fn resized_dims(w: u32, h: u32, size: u32) -> (u32, u32) {
    if w <= h {
        let nh = (u64::from(size) * u64::from(h) / u64::from(w.max(1))) as u32;
        (size, nh.max(1))
    } else {
        let nw = (u64::from(size) * u64::from(w) / u64::from(h.max(1))) as u32;
        (nw.max(1), size)
    }
}

/// torchvision `CenterCrop`: `int(round((len - crop) / 2))`, Python's round half to even.
pub fn crop_offset(len: u32, crop: u32) -> i64 {
    let twice = i64::from(len) - i64::from(crop);
    let half = twice.div_euclid(2);
    if twice.rem_euclid(2) == 1 && half.rem_euclid(2) == 1 {
        // x.5 rounds to the even neighbour: half is odd, so round up.
        half + 1
    } else {
        half
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pre() -> Preprocess {
        Preprocess {
            resize: 256,
            size: 224,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            max_bytes: 1 << 20,
            max_pixels: 10_000_000,
        }
    }

    fn encode(img: &DynamicImage, fmt: image::ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        out.into_inner()
    }

    fn reference_round_half_even(x: f64) -> i64 {
        let r = x.round();
        if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
            (r - x.signum()) as i64
        } else {
            r as i64
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn crop_offset_matches_python_round(len in 1u32..5000, crop in 1u32..600) {
            let want = reference_round_half_even((f64::from(len) - f64::from(crop)) / 2.0);
            prop_assert_eq!(crop_offset(len, crop), want);
        }

        #[test]
        fn resized_keeps_aspect_like_torchvision(w in 1u32..6000, h in 1u32..6000) {
            let (nw, nh) = resized_dims(w, h, 256);
            prop_assert_eq!(nw.min(nh), 256);
            let want = (256.0 * f64::from(w.max(h)) / f64::from(w.min(h))) as u32;
            prop_assert!(nw.max(nh).abs_diff(want) <= 1, "{} vs {}", nw.max(nh), want);
        }
    }

    #[test]
    fn uniform_image_normalises_to_constant_planes() {
        let img =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 500, image::Rgb([255, 0, 128])));
        let t = pre().run(&encode(&img, image::ImageFormat::Png)).unwrap();
        let plane = 224 * 224;
        let p = pre();
        for (c, v) in [255.0f32, 0.0, 128.0].iter().enumerate() {
            let want = (v / 255.0 - p.mean[c]) / p.std[c];
            for x in &t[c * plane..(c + 1) * plane] {
                assert!((x - want).abs() < 1e-5, "channel {c}: {x} vs {want}");
            }
        }
    }

    #[test]
    fn greyscale_alpha_and_gif_become_rgb() {
        let grey =
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(64, 64, image::Luma([200])));
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            64,
            64,
            image::Rgba([1, 2, 3, 0]),
        ));
        for (img, fmt) in [
            (&grey, image::ImageFormat::Png),
            (&grey, image::ImageFormat::Jpeg),
            (&rgba, image::ImageFormat::Png),
            (&rgba, image::ImageFormat::Gif),
            (&rgba, image::ImageFormat::WebP),
        ] {
            let rgb = pre().decode(&encode(img, fmt)).unwrap();
            assert_eq!(rgb.dimensions(), (64, 64), "{fmt:?}");
        }
        let rgb = pre()
            .decode(&encode(&grey, image::ImageFormat::Png))
            .unwrap();
        assert_eq!(rgb.get_pixel(3, 3).0, [200, 200, 200]);
    }

    #[test]
    fn bad_inputs_are_rejected_with_reasons() {
        let p = pre();
        assert_eq!(p.run(b"").unwrap_err().reason, "empty");
        assert_eq!(
            p.run(b"hello, I am text\n").unwrap_err().reason,
            "not_an_image"
        );
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(320, 240, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        }));
        let jpeg = encode(&img, image::ImageFormat::Jpeg);
        assert!(p.run(&jpeg).is_ok());
        let truncated = &jpeg[..jpeg.len() / 3];
        assert_eq!(p.run(truncated).unwrap_err().reason, "corrupt_image");
        let mut big = pre();
        big.max_bytes = 100;
        assert_eq!(big.run(&jpeg).unwrap_err().reason, "too_large");
        let mut few = pre();
        few.max_pixels = 320 * 240 - 1;
        assert_eq!(few.run(&jpeg).unwrap_err().reason, "too_many_pixels");
    }

    #[test]
    fn png_bomb_header_is_rejected_before_decoding() {
        let bomb = png_bomb(50_000, 50_000);
        let err = pre().run(&bomb).unwrap_err();
        assert_eq!(err.reason, "too_many_pixels", "{err:?}");
    }

    /// A PNG header claiming `w`×`h` pixels, followed by a tiny IDAT (a decompression bomb's
    /// header: the check must fire before any allocation).
    fn png_bomb(w: u32, h: u32) -> Vec<u8> {
        let img = DynamicImage::ImageLuma8(image::GrayImage::new(1, 1));
        let mut png = encode(&img, image::ImageFormat::Png);
        // IHDR data starts at byte 16: width, height (big-endian), then a CRC at 29..33.
        png[16..20].copy_from_slice(&w.to_be_bytes());
        png[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
}
