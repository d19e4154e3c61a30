package enclave

import (
	"encoding/json"
	"errors"
	"io/fs"
	"time"

	"github.com/nitrovm/nitrovm/eif"
)

// InspectEIF opens the EIF at path and returns its architecture and size.
// It is the Manager.Inspect of the nitrovm command.
func InspectEIF(path string) (Image, error) {
	f, err := eif.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return Image{}, wrapErr(KindFileOperation, err, "Failed to open the EIF file")
		}
		return Image{}, wrapErr(KindEIF, err, "EIF file parsing error")
	}
	defer f.Close()
	// nitro-cli checks a signed EIF's signature and certificate before it
	// starts it (E59); an unsigned one is started as it is.
	if f.IsSigned() {
		sig, err := f.Signature()
		if err != nil {
			return Image{}, wrapErr(KindSignature, err, "Failed to create EIF signature checker")
		}
		if err := sig.CheckForLaunch(time.Now()); err != nil {
			return Image{}, wrapErr(KindSignature, err, "Invalid signing certificate")
		}
	}
	img := Image{Arch: f.Arch().String(), Size: f.Size()}
	meta, err := f.Metadata()
	if err != nil {
		return Image{}, wrapErr(KindEIF, err, "EIF file parsing error")
	}
	if meta != nil {
		img.HasMetadata, img.ImageName, img.ImageVersion = true, meta.ImageName, meta.ImageVersion
		info := &eif.MetadataInfo{BuildInfo: meta.BuildMetadata, DockerInfo: meta.DockerInfo, CustomMetadata: meta.CustomMetadata}
		if img.Metadata, err = json.Marshal(info); err != nil {
			return Image{}, wrapErr(KindEIF, err, "encode EIF metadata")
		}
	}
	return img, nil
}
