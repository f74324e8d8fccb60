// Fuzzes the resumable PDU decoder: arbitrary bytes, split into arbitrary chunks, with
// digests on or off and data segments placed into a caller buffer or owned. Properties
// checked: no crash/UB/leak, every completed PDU's data span lies inside its backing
// store, and feeding never consumes more than it was given.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "iser/pdu/pdu_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint8_t mode = data[0];
  uint8_t chunk = static_cast<uint8_t>(data[1] | 1);
  data += 2;
  size -= 2;

  iser::pdu::PduReader reader;
  reader.set_header_digest(mode & 1);
  reader.set_data_digest(mode & 2);
  reader.set_max_data_segment((mode & 4) ? 8192 : 65536);
  std::vector<uint8_t> placement_buffer(65536);
  bool place = mode & 8;
  reader.set_placement([&](const iser::pdu::Bhs& bhs, std::span<const uint8_t>) {
    uint32_t len = bhs.data_segment_length();
    if (!place || len > placement_buffer.size()) return std::span<uint8_t>();
    return std::span<uint8_t>(placement_buffer.data(), len);
  });

  size_t pos = 0;
  while (pos < size) {
    size_t n = std::min<size_t>(chunk, size - pos);
    bool complete = false;
    if ((mode & 16) && reader.DirectSpan().size() > 0) {
      // Exercise the in-place receive path like the TCP transport does.
      std::span<uint8_t> dst = reader.DirectSpan();
      size_t m = std::min(dst.size(), n);
      std::copy(data + pos, data + pos + m, dst.begin());
      if (!reader.DirectAdvance(m, &complete).ok()) return 0;
      pos += m;
    } else {
      auto used = reader.Feed({data + pos, n}, &complete);
      if (!used.ok()) return 0;  // framing error: the connection would close
      if (*used > n) std::abort();
      pos += *used;
    }
    if (complete) {
      iser::pdu::ReceivedPdu pdu = reader.TakePdu();
      if (pdu.data.size() != pdu.bhs.data_segment_length()) std::abort();
      if (pdu.placed) {
        if (pdu.data.data() != placement_buffer.data()) std::abort();
      } else if (!pdu.data.empty() && pdu.data.data() != pdu.owned.data()) {
        std::abort();
      }
    }
  }
  return 0;
}
