package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it is
// 100 on every Linux this runs on.
const clockTicks = 100

// selfCPU returns this process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// procCPU returns utime+stime of pid in seconds, or -1 when pid is 0 or gone.
func procCPU(pid int) float64 {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) may contain spaces: fields count from the
	// last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return -1
	}
	ut, _ := strconv.ParseFloat(string(f[11]), 64)
	st, _ := strconv.ParseFloat(string(f[12]), 64)
	return (ut + st) / clockTicks
}

// kbField returns the "Name:   N kB" value of a /proc status-like file in bytes.
func kbField(path, name string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte(name+":"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			return -1
		}
		v, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return -1
		}
		return v * 1024
	}
	return -1
}

// procRSS returns the resident set of pid in bytes, or -1.
func procRSS(pid int) int64 {
	if pid <= 0 {
		return -1
	}
	return kbField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
}

// slabBytes returns the kernel's slab memory (/proc/meminfo Slab) in bytes:
// socket structures and buffers of both ends of every loopback connection.
func slabBytes() int64 { return kbField("/proc/meminfo", "Slab") }

// cpuSample is a point-in-time CPU reading of both processes.
type cpuSample struct {
	self, server float64
	each         []float64 // per server (sampleServers only)
	brokers      []float64 // per -broker-pid process, in server (sampleServers only)
	busy         []float64 // per CPU of the machine, busy seconds since boot (sampleServers only)
}

func sampleCPU(pid int) cpuSample { return cpuSample{self: selfCPU(), server: procCPU(pid)} }

// sampleServers samples this process and every server of o: server is the
// sum over o.ServerPIDs and o.BrokerPIDs (-1 when one is gone or no server
// is given), each the servers one by one, brokers the broker processes.
func sampleServers(o *Options) cpuSample {
	var s cpuSample
	if len(o.ServerPIDs) <= 1 {
		s = sampleCPU(o.ServerPID)
		s.each = []float64{s.server}
	} else {
		s = cpuSample{self: selfCPU(), each: make([]float64, len(o.ServerPIDs))}
		for i, pid := range o.ServerPIDs {
			s.each[i] = procCPU(pid)
			if s.each[i] < 0 || s.server < 0 {
				s.server = -1
				continue
			}
			s.server += s.each[i]
		}
	}
	if len(o.BrokerPIDs) > 0 {
		s.brokers = make([]float64, len(o.BrokerPIDs))
		for i, pid := range o.BrokerPIDs {
			s.brokers[i] = procCPU(pid)
			if s.brokers[i] < 0 || s.server < 0 {
				s.server = -1
				continue
			}
			s.server += s.brokers[i]
		}
	}
	s.busy = cpuBusy()
	return s
}

// procName returns the command name of pid (/proc/PID/comm), or "".
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// cpuBusy returns each CPU's busy time since boot in seconds, from the
// cpuN lines of /proc/stat (user, nice, system, irq, softirq and steal;
// guest time is in user already); nil when it cannot be read. Over a
// window, a CPU's busy time minus the processes pinned to it is what else
// ran there: other processes, and interrupt work not charged to anyone.
func cpuBusy() []float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	return parseCPUBusy(b)
}

func parseCPUBusy(stat []byte) []float64 {
	var out []float64
	for line := range bytes.SplitSeq(stat, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) < 9 || !bytes.HasPrefix(f[0], []byte("cpu")) || len(f[0]) == 3 {
			continue
		}
		n, err := strconv.Atoi(string(f[0][3:]))
		if err != nil || n < 0 || n > 4096 {
			continue
		}
		var busy float64
		for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
			v, _ := strconv.ParseFloat(string(f[i]), 64)
			busy += v
		}
		for len(out) <= n {
			out = append(out, 0)
		}
		out[n] = busy / clockTicks
	}
	return out
}

// busyDelta is b - a per CPU; nil unless both have the same CPUs.
func busyDelta(a, b []float64) []float64 {
	if len(a) == 0 || len(a) != len(b) {
		return nil
	}
	d := make([]float64, len(a))
	for i := range a {
		d[i] = b[i] - a[i]
	}
	return d
}
