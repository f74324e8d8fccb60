#include "iser/transport/iser/registered_buffer_pool.h"

#include <memory>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/base/io_buffer.h"
#include "iser/transport/rdma/softiwarp/softiwarp.h"

namespace iser::iser_transport {
namespace {

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_ = std::move(*EventLoop::Create());
    dev_ = softiwarp::OpenDevice(loop_.get());
    pd_ = *dev_->AllocPd();
    pool_ = std::make_unique<RegisteredBufferPool>(pd_.get(), rdma::kAccessRemoteWrite);
  }
  void TearDown() override {
    pool_.reset();
    pd_.reset();
    dev_.reset();
  }
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<softiwarp::SoftDevice> dev_;
  std::unique_ptr<rdma::ProtectionDomain> pd_;
  std::unique_ptr<RegisteredBufferPool> pool_;
};

TEST_F(PoolTest, LeasesAreRegisteredOnceAndReused) {
  uint8_t* first = nullptr;
  uint32_t lkey = 0;
  {
    auto a = pool_->Get(5000);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->capacity(), 8192u);  // next power of two
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a->data()) % 4096, 0u);
    first = a->data();
    lkey = a->lkey();
    const softiwarp::MrEntry* e = dev_->mrs().Find(lkey);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->access, rdma::kAccessRemoteWrite | rdma::kAccessLocalWrite);
    EXPECT_EQ(e->length, 8192u);
  }
  auto b = pool_->Get(8192);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->data(), first);
  EXPECT_EQ(b->lkey(), lkey);
  auto c = pool_->Get(100);  // a different class: a new buffer
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->data(), first);
  EXPECT_EQ(pool_->registrations(), 2u);
  // A moved lease returns its buffer once.
  RegisteredBufferPool::Lease moved = std::move(*b);
  moved.Reset();
  auto d = pool_->Get(8000);
  auto e = pool_->Get(8000);
  ASSERT_TRUE(d.ok() && e.ok());
  EXPECT_NE(d->data(), e->data());
  EXPECT_EQ(pool_->registrations(), 3u);
}

TEST_F(PoolTest, LocalRegionsAreCachedByAddress) {
  IoBuffer buf = IoBuffer::Allocate(64 << 10);
  auto r1 = pool_->LocalRegion(buf.data(), 32 << 10);
  auto r2 = pool_->LocalRegion(buf.data(), 64 << 10);  // longer: re-registered
  auto r3 = pool_->LocalRegion(buf.data(), 4096);      // covered: cached
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());
  uint32_t k1 = (*r1)->lkey(), k2 = (*r2)->lkey();
  EXPECT_NE(k1, k2);
  EXPECT_EQ(r2->get(), r3->get());
  EXPECT_EQ(pool_->registrations(), 2u);
  const softiwarp::MrEntry* e = dev_->mrs().Find(k2);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->access, rdma::kAccessLocalWrite);  // never remotely accessible
  // The shorter one left the cache but stays registered while someone holds it.
  EXPECT_NE(dev_->mrs().Find(k1), nullptr);
  r1->reset();
  EXPECT_EQ(dev_->mrs().Find(k1), nullptr);
}

TEST_F(PoolTest, RegionInUseSurvivesTheCacheBeingFlushed) {
  // Before: a full cache was cleared wholesale, deregistering regions that queued work
  // requests still named by lkey; softiwarp then failed those WRs with a local
  // protection error and the connection went down.
  std::vector<uint8_t> mem(8192 * 64);
  auto in_use = pool_->LocalRegion(mem.data(), 64);
  ASSERT_TRUE(in_use.ok());
  uint32_t key = (*in_use)->lkey();
  for (size_t i = 1; i < 8192; ++i) ASSERT_TRUE(pool_->LocalRegion(mem.data() + i * 64, 64).ok());
  EXPECT_LT(pool_->cached_regions(), 8192u);  // the cache was flushed on the way
  const softiwarp::MrEntry* e = dev_->mrs().Find(key);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->addr, reinterpret_cast<uint64_t>(mem.data()));
  in_use->reset();
  EXPECT_EQ(dev_->mrs().Find(key), nullptr);
}

TEST_F(PoolTest, TooLargeIsAnError) { EXPECT_FALSE(pool_->Get(size_t{1} << 40).ok()); }

}  // namespace
}  // namespace iser::iser_transport
