//! Media helpers for the end-to-end tests: GStreamer pipelines as peers ([`Gst`], Debian package
//! gstreamer1.0-tools, installed by the test command), a tone detector ([`goertzel`]) and WAV reading.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `gst-launch-1.0` pipeline under `timeout 60`, stopped on drop.
pub struct Gst(Child);

impl Gst {
    /// Starts `pipeline` (gst-launch-1.0 syntax, elements separated by whitespace).
    pub fn launch(pipeline: &str) -> Gst {
        let child = Command::new("timeout")
            .args(["60", "gst-launch-1.0", "-q"])
            .args(pipeline.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gst-launch-1.0 (package gstreamer1.0-tools) is installed by the test command");
        Gst(child)
    }

    /// Waits for the pipeline to finish; fails the test with its stderr if it fails or takes over `limit`.
    pub fn finish(mut self, limit: Duration) {
        self.wait_exit(limit);
        let status = self.0.try_wait().ok().flatten().expect("exited");
        let mut err = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        assert!(status.success(), "gst-launch-1.0 failed ({status}): {err}");
    }

    /// Waits until the pipeline has exited, at most `limit` (whatever its status).
    pub fn wait_exit(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.exited() {
            assert!(Instant::now() < deadline, "gst-launch-1.0 did not finish within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the pipeline has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Gst {
    fn drop(&mut self) {
        // SIGTERM to `timeout`, which passes it on to gst-launch-1.0 (a SIGKILL would orphan it).
        // SAFETY: kill(2) on a child we spawned and have not reaped; at worst it fails with ESRCH.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The power of `hz` in `samples` taken at `rate` (Goertzel), normalised by the length.
pub fn goertzel(samples: &[i16], hz: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (samples.len() as f64).powi(2)
}

/// The 16-bit samples of a WAV file's data chunk (all channels interleaved).
pub fn read_wav(path: &Path) -> Vec<i16> {
    read_wav_format(path).2
}

/// A 16-bit WAV file: its sampling rate, its channels and its samples (interleaved).
pub fn read_wav_format(path: &Path) -> (u32, u16, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fmt = bytes.windows(4).position(|w| w == b"fmt ").expect("fmt chunk") + 8;
    let channels = u16::from_le_bytes([bytes[fmt + 2], bytes[fmt + 3]]);
    let rate = u32::from_le_bytes([bytes[fmt + 4], bytes[fmt + 5], bytes[fmt + 6], bytes[fmt + 7]]);
    let data = bytes.windows(4).position(|w| w == b"data").expect("data chunk") + 8;
    (rate, channels, bytes[data..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect())
}
