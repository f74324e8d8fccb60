// Buffers registered with a protection domain once and reused (RDMA needs every local
// buffer of a work request to be a memory region; registering per I/O costs a
// page-pinning syscall on real NICs).
//
// Two kinds:
//  - Lease(): a pool buffer (power-of-two size class, page aligned) for receive
//    buffers, control-PDU Sends and RDMA Read sinks; returned to the pool when the
//    Lease dies.
//  - LocalRegion(): a registration of caller-owned memory (task IoBuffers, which have
//    their own per-thread recycling), cached by address so recycled IoBuffers hit the
//    cache. Shared: a work request holds its region until it completes, so the cache
//    may drop entries (when full, or re-registering an address for a longer length)
//    without ever deregistering a region under a posted work request.
//
// One pool per PD per event loop; not thread-safe.
#ifndef ISER_TRANSPORT_ISER_REGISTERED_BUFFER_POOL_H_
#define ISER_TRANSPORT_ISER_REGISTERED_BUFFER_POOL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::iser_transport {

class RegisteredBufferPool {
 public:
  struct Chunk;

  // Ownership of one pool buffer; move-only; gives it back on destruction.
  class Lease {
   public:
    Lease() = default;
    Lease(RegisteredBufferPool* pool, Chunk* chunk) : pool_(pool), chunk_(chunk) {}
    ~Lease() { Reset(); }
    Lease(Lease&& o) noexcept : pool_(o.pool_), chunk_(o.chunk_) { o.chunk_ = nullptr; }
    Lease& operator=(Lease&& o) noexcept {
      if (this != &o) {
        Reset();
        pool_ = o.pool_;
        chunk_ = o.chunk_;
        o.chunk_ = nullptr;
      }
      return *this;
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    uint8_t* data() const;
    size_t capacity() const;
    uint32_t lkey() const;
    std::span<uint8_t> span() const { return {data(), capacity()}; }
    explicit operator bool() const { return chunk_ != nullptr; }
    void Reset();

   private:
    RegisteredBufferPool* pool_ = nullptr;
    Chunk* chunk_ = nullptr;
  };

  // `access`: access flags for pool buffers (local write is always added).
  RegisteredBufferPool(rdma::ProtectionDomain* pd, uint32_t access);
  ~RegisteredBufferPool();
  RegisteredBufferPool(const RegisteredBufferPool&) = delete;
  RegisteredBufferPool& operator=(const RegisteredBufferPool&) = delete;

  absl::StatusOr<Lease> Get(size_t size);
  // A local-access registration covering [addr, addr + len). Keep the returned
  // reference for as long as a work request uses its lkey.
  absl::StatusOr<std::shared_ptr<rdma::MemoryRegion>> LocalRegion(const void* addr, size_t len);
  size_t cached_regions() const { return key_cache_.size(); }

  size_t registrations() const { return registrations_; }

 private:
  static constexpr int kMinClass = 12;  // 4 KiB
  static constexpr int kMaxClass = 26;  // 64 MiB
  static constexpr size_t kMaxCachedKeys = 4096;
  void Put(Chunk* chunk);

  rdma::ProtectionDomain* pd_;
  uint32_t access_;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  std::vector<Chunk*> free_[kMaxClass + 1];
  struct Cached {
    size_t len;
    std::shared_ptr<rdma::MemoryRegion> mr;
  };
  // Exact-address lookups only: a hash map, not an ordered one (std::map made every
  // lookup a dozen cache misses: 0.3-0.5 us per I/O at the target).
  absl::flat_hash_map<uintptr_t, Cached> key_cache_;
  size_t registrations_ = 0;
};

}  // namespace iser::iser_transport

#endif  // ISER_TRANSPORT_ISER_REGISTERED_BUFFER_POOL_H_
