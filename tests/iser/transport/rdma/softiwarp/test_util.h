// Helpers for software iWARP tests: building FPDUs by hand.
#ifndef TESTS_ISER_TRANSPORT_RDMA_SOFTIWARP_TEST_UTIL_H_
#define TESTS_ISER_TRANSPORT_RDMA_SOFTIWARP_TEST_UTIL_H_

#include <cstdint>
#include <span>
#include <vector>

#include "iser/transport/rdma/softiwarp/ddp_rdmap_wire.h"

namespace iser::softiwarp::testing {

// A complete FPDU (length, header, payload, pad, CRC) for header `hdr` (any wire
// struct from ddp_rdmap_wire.h; ULPDU_Length is filled in).
std::vector<uint8_t> Fpdu(std::span<const uint8_t> hdr, std::span<const uint8_t> payload,
                          bool crc = true);

template <typename H>
std::vector<uint8_t> Fpdu(const H& hdr, std::span<const uint8_t> payload = {}, bool crc = true) {
  return Fpdu(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&hdr), sizeof(H)),
              payload, crc);
}

TaggedHdr WriteHdr(uint32_t stag, uint64_t to, bool last = true);
TaggedHdr ReadResponseHdr(uint32_t stag, uint64_t to, bool last = true);
UntaggedHdr SendHdr(uint32_t msn, uint32_t mo, bool last = true,
                    RdmapOpcode op = RdmapOpcode::kSend, uint32_t inv_stag = 0);
ReadRequestHdr ReadReqHdr(uint32_t msn, uint32_t sink_stag, uint64_t sink_to, uint32_t size,
                          uint32_t src_stag, uint64_t src_to);

void Append(std::vector<uint8_t>* out, std::span<const uint8_t> more);

}  // namespace iser::softiwarp::testing

#endif  // TESTS_ISER_TRANSPORT_RDMA_SOFTIWARP_TEST_UTIL_H_
