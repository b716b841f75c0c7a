package fence_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regentd/regent/fence"
)

// BenchmarkClaim measures what claim adds to a worker transaction: each
// iteration is BEGIN, the timed statement, COMMIT on one connection to a
// local server. "claim" is a same-term claim (the steady state of a
// worker), "move" a claim that moves the fence every time, and "select1" a
// trivial statement: the round trip any statement costs. Besides ns/op
// (the whole transaction) it reports the timed statement's median and
// p99. Run with -benchtime 10000x for the figures in doc.go.
func BenchmarkClaim(b *testing.B) {
	u := installed(b, 0)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	tok := fence.Token{Key: "bench", Owner: "o", Term: 1}
	run := func(b *testing.B, stmt func(tx pgx.Tx, i int) error) {
		lat := make([]time.Duration, 0, b.N)
		i := 0
		for b.Loop() {
			tx, err := c.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if err := stmt(tx, i); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			i++
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("select1", func(b *testing.B) {
		run(b, func(tx pgx.Tx, _ int) error {
			_, err := tx.Exec(ctx, `SELECT 1`)
			return err
		})
	})
	b.Run("claim", func(b *testing.B) {
		run(b, func(tx pgx.Tx, _ int) error {
			_, err := tok.Claim(ctx, tx)
			return err
		})
	})
	b.Run("move", func(b *testing.B) {
		mk := fence.Token{Key: "bench-move", Owner: "o", Term: time.Now().UnixNano()}
		run(b, func(tx pgx.Tx, i int) error {
			t := mk
			t.Term += int64(i)
			_, err := t.Claim(ctx, tx)
			return err
		})
	})
}
