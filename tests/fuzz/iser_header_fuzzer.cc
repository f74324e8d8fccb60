// libFuzzer target for the iSER header parser (RFC 7145 sec 9): arbitrary bytes as a
// received Send. Invariant: a decoded header re-encodes to a header that decodes to the
// same values (fields with a clear valid bit are zero).
#include <cstdint>
#include <cstdlib>
#include <span>

#include "iser/transport/iser/iser_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace iser::iser_transport;  // NOLINT
  auto h = DecodeIserHeader(std::span<const uint8_t>(data, size));
  if (!h.ok()) return 0;
  uint8_t out[kIserHeaderSize];
  EncodeIserHeader(*h, out);
  auto again = DecodeIserHeader(out);
  if (!again.ok()) std::abort();
  if (again->opcode != h->opcode || again->write_valid != h->write_valid ||
      again->read_valid != h->read_valid || again->write_stag != h->write_stag ||
      again->write_base != h->write_base || again->read_stag != h->read_stag ||
      again->read_base != h->read_base || again->ird_or_ord != h->ird_or_ord ||
      again->reject != h->reject || again->max_version != h->max_version ||
      again->min_or_cur_version != h->min_or_cur_version)
    std::abort();
  return 0;
}
