/**
 * gsb/dataflow.hpp: C-simulation of a DATAFLOW region with bounded FIFOs (never synthesized).
 *
 * Vitis runs the processes of a DATAFLOW region concurrently; a process blocks when it reads
 * an empty FIFO or writes a full one, and a design whose FIFOs are too shallow deadlocks in
 * co-simulation and on hardware.  A sequential C-simulation cannot see that, so here every
 * process of a region is its own std::thread, and gsb::stream (gsb/stream.hpp) blocks like the
 * hardware FIFO at its depth.  All streams share one scheduler lock, which makes deadlock
 * detection exact: whenever a process is about to wait, the scheduler checks whether every
 * live process is waiting on a condition that no other process can change; if so it is a
 * deadlock, reported by a gsb::deadlock_error naming every stalled process and the stream (or
 * the PIPO producer) it waits for.  A bounded process network is deterministic (Kahn), so
 * whether a deadlock happens does not depend on the thread schedule.
 *
 * A region's arrays between processes are PIPOs: Vitis starts the consumer only after the
 * producer finished.  region::process(name, after, fn) models that: the process waits for
 * the processes named in `after` (space-separated) before it runs.
 *
 * Errors: the first exception a process throws (a GSB_CHECK, a deadlock) stops every process
 * of the simulation; the outermost region::join() rethrows it in the caller's thread.
 */
#ifndef GSB_DATAFLOW_HPP
#define GSB_DATAFLOW_HPP

#include "gsb/common.hpp"

#ifndef GSB_CSIM
#error "gsb/dataflow.hpp is gsbsim's C-simulation (GSB_CSIM) helper; synthesis and Vitis csim do not use it"
#endif

#include <condition_variable>
#include <exception>
#include <functional>
#include <list>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gsb/common.hpp"

namespace gsb {

/** Every live process of the C-simulation waits for something only another waiting process can do. */
struct deadlock_error : csim_error {
    explicit deadlock_error(const std::string& what) : csim_error(what) {}
};

namespace df {

/** Thrown in the other processes once one failed; never escapes the outermost join. */
struct aborted {};

struct proc {
    std::string name;
    bool done = false;
    bool waiting = false;
    bool region_wait = false;          // a parent waiting for its region's processes (not reported)
    std::function<bool()> ready;       // the condition it waits for
    std::function<std::string()> why;  // what it waits for, for the deadlock report
    bool writing = false;              // waiting to write a full stream
    const void* key = nullptr;         // the stream it waits on (nullptr: a process or region)
    std::condition_variable cv;        // woken only when its condition may have changed
};

class scheduler {
public:
    std::mutex mutex;

    static scheduler& get() {
        static scheduler s;
        return s;
    }

    /** The calling thread's process (the main thread is "main"). */
    proc* self() {
        proc*& p = current();
        if (!p) {
            procs_.emplace_back();
            procs_.back().name = "main";
            p = &procs_.back();
        }
        return p;
    }

    /** Block (lock held) until ready(); a deadlock or another process's error ends the wait by throwing
     *  (a region's join, region_wait, returns instead and rethrows after its threads ended). */
    template <typename Ready, typename Why>
    void wait_until(std::unique_lock<std::mutex>& lk, const void* key, Ready ready, Why why,
                    bool region_wait = false, bool writing = false) {
        if (aborted_ && !region_wait) throw aborted();
        if (ready()) return;
        proc* p = self();
        p->waiting = true;
        p->region_wait = region_wait;
        p->ready = ready;
        p->why = why;
        p->key = key;
        p->writing = writing;
        ++waiters_;
        std::string deadlock;
        while (!ready() && !aborted_) {
            if (deadlocked(deadlock)) break;
            p->cv.wait(lk);
        }
        --waiters_;
        p->waiting = false;
        p->ready = nullptr;
        p->why = nullptr;
        if (!deadlock.empty()) {
            if (p->name == "main" && !region_wait) throw deadlock_error(deadlock);  // sequential C-sim
            fail(std::make_exception_ptr(deadlock_error(deadlock)));
        }
        if (aborted_ && !region_wait) throw aborted();
    }

    /** Stream `key` changed, or a process ended (key nullptr), lock held: wake whoever may go on now. */
    void notify(const void* key = nullptr) {
        if (!waiters_) return;
        for (proc& q : procs_)
            if (q.waiting && (key == nullptr || q.key == key)) q.cv.notify_one();
    }

    /** Record the first error and stop every process (lock held). */
    void fail(std::exception_ptr e) {
        if (!aborted_) {
            error_ = e;
            aborted_ = true;
        }
        for (proc& q : procs_) q.cv.notify_one();
    }
    bool failed() const { return aborted_; }
    std::exception_ptr error() const { return error_; }

    proc* add(const std::string& name) {
        procs_.emplace_back();
        procs_.back().name = name;
        return &procs_.back();
    }
    void remove(proc* p) {
        for (auto it = procs_.begin(); it != procs_.end(); ++it)
            if (&*it == p) {
                procs_.erase(it);
                return;
            }
    }
    static proc*& current() {
        static thread_local proc* p = nullptr;
        return p;
    }

private:
    /** Deadlock: no live process can proceed; `msg` names the stalled processes (lock held). */
    bool deadlocked(std::string& msg) const {
        std::vector<const proc*> stalled, rest;   // writers to full FIFOs first: they show the cause
        for (const proc& q : procs_) {
            if (q.done) continue;
            if (!q.waiting || q.ready()) return false;   // someone can still run
            if (q.region_wait) continue;
            (q.writing ? stalled : rest).push_back(&q);
        }
        stalled.insert(stalled.end(), rest.begin(), rest.end());
        std::ostringstream os;
        if (stalled.size() == 1 && stalled[0]->name == "main") {
            os << stalled[0]->why();   // a sequential C-simulation (no region): the plain stream message
        } else {
            os << "DEADLOCK: every process of the dataflow is blocked";
            for (const proc* q : stalled) os << "\n  process " << q->name << ": " << q->why();
        }
        msg = os.str();
        return true;
    }

    std::list<proc> procs_;   // stable addresses; main and the live processes of every region
    unsigned waiters_ = 0;
    bool aborted_ = false;
    std::exception_ptr error_;
};

/** One DATAFLOW region: its processes run as threads until join(). */
class region {
public:
    explicit region(const char* name) : name_(name) {}
    region(const region&) = delete;
    region& operator=(const region&) = delete;
    ~region() {
        if (!joined_) {
            try {
                join();
            } catch (...) {
            }
        }
    }

    /** Start process `name`; it runs fn() once every process named in `after` (space-separated) is done. */
    void process(const char* name, const char* after, std::function<void()> fn) {
        scheduler& s = scheduler::get();
        std::vector<proc*> preds;
        proc* p;
        {
            std::lock_guard<std::mutex> lk(s.mutex);
            s.self();   // the spawning thread has its process record before any child looks
            std::istringstream is(after);
            for (std::string dep; is >> dep;) {
                proc* found = nullptr;
                for (proc* q : procs_)
                    if (q->name == dep) found = q;
                GSB_CHECK(found, "dataflow region " << name_ << ": process " << name << " waits for unknown process "
                                                    << dep);
                preds.push_back(found);
            }
            p = s.add(name);
            procs_.push_back(p);
        }
        threads_.emplace_back([p, preds, fn]() {
            scheduler& s = scheduler::get();
            scheduler::current() = p;
            try {
                if (!preds.empty()) {
                    std::unique_lock<std::mutex> lk(s.mutex);
                    s.wait_until(
                        lk, nullptr, [preds]() {
                            for (const proc* q : preds)
                                if (!q->done) return false;
                            return true;
                        },
                        [preds]() {
                            std::string names;
                            for (const proc* q : preds)
                                if (!q->done) names += (names.empty() ? "" : ", ") + q->name;
                            return "waiting for process " + names + " to finish (PIPO)";
                        });
                }
                fn();
            } catch (const aborted&) {
            } catch (...) {
                std::lock_guard<std::mutex> lk(s.mutex);
                s.fail(std::current_exception());
            }
            std::lock_guard<std::mutex> lk(s.mutex);
            p->done = true;
            s.notify();
        });
    }

    /** Wait for every process; rethrows the simulation's first error. */
    void join() {
        joined_ = true;
        scheduler& s = scheduler::get();
        {
            std::unique_lock<std::mutex> lk(s.mutex);
            const std::vector<proc*> procs = procs_;
            s.wait_until(
                lk, nullptr, [procs]() {
                    for (const proc* q : procs)
                        if (!q->done) return false;
                    return true;
                },
                [this]() { return "waiting for region " + name_; }, true);
        }
        for (std::thread& t : threads_) t.join();
        {
            std::lock_guard<std::mutex> lk(s.mutex);
            for (proc* q : procs_) s.remove(q);
            procs_.clear();
        }
        if (s.failed()) {
            // the outermost caller gets the error itself; processes unwind quietly
            if (scheduler::current() && scheduler::current()->name != "main") throw aborted();
            std::rethrow_exception(s.error());
        }
    }

private:
    std::string name_;
    std::vector<proc*> procs_;
    std::vector<std::thread> threads_;
    bool joined_ = false;
};

}  // namespace df
}  // namespace gsb

#endif  // GSB_DATAFLOW_HPP
