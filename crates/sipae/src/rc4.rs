//! RC4 (the stream cipher NTLM uses to exchange the session key and to seal signature checksums,
//! MS-NLMP §3.4.4 and §6). Only for those two uses: RC4 is broken as a general cipher.

/// An RC4 keystream: `Rc4::new(key)` is MS-NLMP's `RC4Init(handle, key)`, [`Rc4::apply`] its `RC4(handle, data)`.
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl Rc4 {
    /// The keystream for `key` (1 to 256 bytes; NTLM keys are 16).
    pub fn new(key: &[u8]) -> Rc4 {
        assert!(!key.is_empty() && key.len() <= 256, "RC4 keys are 1 to 256 bytes");
        let mut s = [0u8; 256];
        for (i, b) in s.iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut j = 0u8;
        for i in 0..256 {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, usize::from(j));
        }
        Rc4 { s, i: 0, j: 0 }
    }

    /// XORs `data` with the next bytes of the keystream, in place.
    pub fn apply(&mut self, data: &mut [u8]) {
        for byte in data {
            self.i = self.i.wrapping_add(1);
            self.j = self.j.wrapping_add(self.s[usize::from(self.i)]);
            self.s.swap(usize::from(self.i), usize::from(self.j));
            let k = self.s[usize::from(self.s[usize::from(self.i)].wrapping_add(self.s[usize::from(self.j)]))];
            *byte ^= k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keystream(key: &[u8], skip: usize, n: usize) -> String {
        let mut rc4 = Rc4::new(key);
        let mut buf = vec![0u8; skip + n];
        rc4.apply(&mut buf);
        hex::encode(&buf[skip..])
    }

    #[test]
    fn rfc6229_vectors() {
        // RFC 6229 §2, 40-bit key 0x0102030405: offsets 0 and 1520.
        let key = [1, 2, 3, 4, 5];
        assert_eq!(keystream(&key, 0, 16), "b2396305f03dc027ccc3524a0a1118a8");
        assert_eq!(keystream(&key, 1520, 16), "3294f744d8f9790507e70f62e5bbceea");
        // 128-bit key 0x0102...10, offset 0.
        let key: Vec<u8> = (1..=16).collect();
        assert_eq!(keystream(&key, 0, 16), "9ac7cc9a609d1ef7b2932899cde41b97");
    }

    #[test]
    fn applying_twice_restores() {
        let mut data = *b"attack at dawn";
        Rc4::new(b"key").apply(&mut data);
        assert_ne!(&data, b"attack at dawn");
        Rc4::new(b"key").apply(&mut data);
        assert_eq!(&data, b"attack at dawn");
    }
}
