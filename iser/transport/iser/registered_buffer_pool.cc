#include "iser/transport/iser/registered_buffer_pool.h"

#include <cstdlib>

#include "absl/strings/str_format.h"

namespace iser::iser_transport {

struct RegisteredBufferPool::Chunk {
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> mem;
  size_t capacity = 0;
  int size_class = 0;
  std::unique_ptr<rdma::MemoryRegion> mr;
};

uint8_t* RegisteredBufferPool::Lease::data() const { return chunk_->mem.get(); }
size_t RegisteredBufferPool::Lease::capacity() const { return chunk_->capacity; }
uint32_t RegisteredBufferPool::Lease::lkey() const { return chunk_->mr->lkey(); }

void RegisteredBufferPool::Lease::Reset() {
  if (chunk_ != nullptr) pool_->Put(chunk_);
  chunk_ = nullptr;
}

RegisteredBufferPool::RegisteredBufferPool(rdma::ProtectionDomain* pd, uint32_t access)
    : pd_(pd), access_(access | rdma::kAccessLocalWrite) {}

RegisteredBufferPool::~RegisteredBufferPool() {
  // Regions go before their memory.
  key_cache_.clear();
  for (auto& c : chunks_) c->mr.reset();
}

absl::StatusOr<RegisteredBufferPool::Lease> RegisteredBufferPool::Get(size_t size) {
  int c = kMinClass;
  while (c <= kMaxClass && (size_t{1} << c) < size) ++c;
  if (c > kMaxClass)
    return absl::ResourceExhaustedError(
        absl::StrFormat("buffer of %u bytes too large", static_cast<unsigned>(size)));
  if (!free_[c].empty()) {
    Chunk* chunk = free_[c].back();
    free_[c].pop_back();
    return Lease(this, chunk);
  }
  auto chunk = std::make_unique<Chunk>();
  chunk->capacity = size_t{1} << c;
  chunk->size_class = c;
  chunk->mem.reset(static_cast<uint8_t*>(std::aligned_alloc(4096, chunk->capacity)));
  if (!chunk->mem) return absl::ResourceExhaustedError("out of memory");
  auto mr = pd_->RegisterMemory(chunk->mem.get(), chunk->capacity, access_);
  if (!mr.ok()) return mr.status();
  chunk->mr = std::move(*mr);
  ++registrations_;
  Chunk* raw = chunk.get();
  chunks_.push_back(std::move(chunk));
  return Lease(this, raw);
}

void RegisteredBufferPool::Put(Chunk* chunk) { free_[chunk->size_class].push_back(chunk); }

absl::StatusOr<std::shared_ptr<rdma::MemoryRegion>> RegisteredBufferPool::LocalRegion(
    const void* addr, size_t len) {
  auto key = reinterpret_cast<uintptr_t>(addr);
  auto it = key_cache_.find(key);
  if (it != key_cache_.end() && it->second.len >= len) return it->second.mr;
  // Dropping the cache's references deregisters only regions no work request holds.
  if (key_cache_.size() >= kMaxCachedKeys) key_cache_.clear();
  // Local access only: the peer never gets this key.
  auto mr = pd_->RegisterMemory(const_cast<void*>(addr), len, rdma::kAccessLocalWrite);
  if (!mr.ok()) return mr.status();
  ++registrations_;
  std::shared_ptr<rdma::MemoryRegion> region = std::move(*mr);
  key_cache_[key] = Cached{len, region};
  return region;
}

}  // namespace iser::iser_transport
