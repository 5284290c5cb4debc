//! The packet path allocates nothing: protect, unprotect (accepted and rejected packets, with and without
//! MKI, every suite) and Scale SRTP / per-receiver fan-out run under a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use vienna_srtp::fanout::ScalePolicy;
use vienna_srtp::{
    FanOut, MasterKey, Mki, ReceiverId, ReceiverOptions, ScaleGroup, SrtpReceiver, SrtpSender, Suite, TRAILER_ROOM,
};

struct Counting;

thread_local! {
    /// Allocations made by this thread (tests run on parallel threads).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rtp(buf: &mut [u8], seq: u16, payload: usize) -> usize {
    buf[..12].copy_from_slice(&[0x80, 0x60, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44]);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[12..12 + payload].fill(0x5a);
    12 + payload
}

#[test]
fn packet_path_does_not_allocate() {
    let mut buf = vec![0u8; 1500 + TRAILER_ROOM + 8];
    let mut copy = vec![0u8; buf.len()];
    for suite in Suite::ALL {
        for mki in [None, Some(Mki::new(1, 1).unwrap())] {
            let key = MasterKey::random(suite).unwrap();
            let mut tx = SrtpSender::new(&key, mki, None).unwrap();
            let mut rx = SrtpReceiver::new(&key, mki, None, ReceiverOptions::default()).unwrap();
            // Warm up: the first packet of an SSRC creates libsrtp's stream and the receiver's SSRC list.
            let len = rtp(&mut buf, 0, 160);
            let n = tx.protect_rtp(&mut buf, len).unwrap();
            rx.unprotect_rtp(&mut buf[..n]).unwrap();

            let before = allocations();
            for seq in 1..2000u16 {
                let len = rtp(&mut buf, seq, 160 + usize::from(seq % 1000));
                let n = tx.protect_rtp(&mut buf, len).unwrap();
                if seq % 2 == 0 {
                    copy[..n].copy_from_slice(&buf[..n]);
                    rx.unprotect_rtp(&mut buf[..n]).unwrap();
                    // Rejected on the same path: the same packet again.
                    buf[..n].copy_from_slice(&copy[..n]);
                    assert!(rx.unprotect_rtp(&mut buf[..n]).is_err());
                } else {
                    // Rejected: a bad tag.
                    buf[n - 2] ^= 1;
                    assert!(rx.unprotect_rtp(&mut buf[..n]).is_err());
                }
            }
            assert_eq!(rx.rejected().total(), 1999);
            let after = allocations();
            assert_eq!(after - before, 0, "{suite} mki={mki:?}: allocations on the packet path");
        }
    }
}

#[test]
fn fan_out_does_not_allocate() {
    let suite = Suite::AesCm128HmacSha1_80;
    let key = MasterKey::random(suite).unwrap();
    let mut group = ScaleGroup::new(&key, Some(Mki::new(1, 1).unwrap()), None, ScalePolicy::default()).unwrap();
    let mut fan = FanOut::new(1500);
    for i in 0..50u16 {
        group.join(ReceiverId(u64::from(i)), ([127, 0, 0, 1], 20_000 + i).into());
        let k = MasterKey::random(suite).unwrap();
        fan.add_leg(
            ReceiverId(1000 + u64::from(i)),
            ([127, 0, 0, 1], 30_000 + i).into(),
            SrtpSender::new(&k, None, None).unwrap(),
        );
    }
    fan.set_group(group);
    let mut buf = vec![0u8; 1500 + TRAILER_ROOM + 8];
    let len = rtp(&mut buf, 0, 160);
    fan.protect_rtp(&mut buf, len).unwrap();
    let before = allocations();
    let mut sent = 0;
    for seq in 1..500u16 {
        let len = rtp(&mut buf, seq, 160);
        let out = fan.protect_rtp(&mut buf, len).unwrap();
        sent += out.datagrams().count();
    }
    assert_eq!(allocations() - before, 0);
    assert_eq!(sent, 499 * 100);
}
