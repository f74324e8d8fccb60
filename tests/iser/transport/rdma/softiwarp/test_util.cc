#include "tests/iser/transport/rdma/softiwarp/test_util.h"

#include "iser/transport/rdma/softiwarp/crc32c.h"
#include "iser/transport/rdma/softiwarp/mpa_wire.h"

namespace iser::softiwarp::testing {

// Built independently of FpduWriter so the tests check it rather than mirror it.
std::vector<uint8_t> Fpdu(std::span<const uint8_t> hdr, std::span<const uint8_t> payload,
                          bool crc) {
  std::vector<uint8_t> out(hdr.begin(), hdr.end());
  out.insert(out.end(), payload.begin(), payload.end());
  uint32_t ulpdu = static_cast<uint32_t>(out.size() - 2);
  out[0] = static_cast<uint8_t>(ulpdu >> 8);
  out[1] = static_cast<uint8_t>(ulpdu);
  while (out.size() % 4 != 0) out.push_back(0);
  uint32_t c = crc ? ComputeCrc32c(out) : 0;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(c >> (8 * i)));
  return out;
}

TaggedHdr WriteHdr(uint32_t stag, uint64_t to, bool last) {
  TaggedHdr t{};
  t.ctrl.ddp_ctrl = 0x81 | (last ? 0x40 : 0);
  t.ctrl.rdmap_ctrl = 0x40;
  t.stag.set(stag);
  t.to.set(to);
  return t;
}

TaggedHdr ReadResponseHdr(uint32_t stag, uint64_t to, bool last) {
  TaggedHdr t = WriteHdr(stag, to, last);
  t.ctrl.rdmap_ctrl = 0x42;
  return t;
}

UntaggedHdr SendHdr(uint32_t msn, uint32_t mo, bool last, RdmapOpcode op, uint32_t inv_stag) {
  UntaggedHdr u{};
  u.ctrl.ddp_ctrl = 0x01 | (last ? 0x40 : 0);
  u.ctrl.rdmap_ctrl = static_cast<uint8_t>(0x40 | static_cast<uint8_t>(op));
  u.inval_stag.set(inv_stag);
  u.qn.set(0);
  u.msn.set(msn);
  u.mo.set(mo);
  return u;
}

ReadRequestHdr ReadReqHdr(uint32_t msn, uint32_t sink_stag, uint64_t sink_to, uint32_t size,
                          uint32_t src_stag, uint64_t src_to) {
  ReadRequestHdr r{};
  r.ddp.ctrl.ddp_ctrl = 0x41;
  r.ddp.ctrl.rdmap_ctrl = 0x41;
  r.ddp.qn.set(1);
  r.ddp.msn.set(msn);
  r.ddp.mo.set(0);
  r.sink_stag.set(sink_stag);
  r.sink_to.set(sink_to);
  r.read_size.set(size);
  r.src_stag.set(src_stag);
  r.src_to.set(src_to);
  return r;
}

void Append(std::vector<uint8_t>* out, std::span<const uint8_t> more) {
  out->insert(out->end(), more.begin(), more.end());
}

}  // namespace iser::softiwarp::testing
