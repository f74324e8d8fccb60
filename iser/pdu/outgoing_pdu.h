// A PDU on its way out, as both the target and the initiator queue them.
#ifndef ISER_PDU_OUTGOING_PDU_H_
#define ISER_PDU_OUTGOING_PDU_H_

#include <cstdint>
#include <span>
#include <vector>

#include "iser/base/io_buffer.h"
#include "iser/pdu/bhs.h"

namespace iser::pdu {

// `data` points into `owned`, into `buffer`, or into the `buffer` of a later PDU in the
// same send queue (e.g. the Data-In PDUs of one read share the task's buffer, which the
// last of them owns; queues are FIFO, so it outlives the others), or into memory the
// sender keeps alive until the PDU is written (e.g. an initiator's write buffer).
struct OutgoingPdu {
  Bhs bhs;
  std::vector<uint8_t> owned;
  std::span<const uint8_t> data;
  IoBuffer buffer;

  void SetOwnedData(std::vector<uint8_t> bytes) {
    owned = std::move(bytes);
    data = owned;
    bhs.set_data_segment_length(static_cast<uint32_t>(owned.size()));
  }
};

}  // namespace iser::pdu

#endif  // ISER_PDU_OUTGOING_PDU_H_
